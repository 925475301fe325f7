"""Coalescing of Cloudflare jobs per target, shared by all replicas through three small Lua scripts.

Each target (``tunnel:<id>``, ``zone:<name>``, ``access:<host><path>``) has a state hash with:
``inflight`` (the job id awaiting its result, or ``plan:<token>`` while a replica is building the job),
``since`` (when that started, ms), ``pending`` (a change arrived meanwhile), ``version`` (the last emitted
desired version) and ``members`` (the rule keys of that job, for rule statuses when its result comes).

* ``mark``: a change touched the target. If nothing is in flight the caller takes the target (``plan:<token>``)
  and plans at once — a lone change pays no waiting window. Otherwise ``pending`` is set and the caller is done:
  the change is folded into the next job.
* ``commit``: the planner's job. If the version equals the last emitted one no job is sent (and the target is
  released, or planned again if something became pending meanwhile). Otherwise the job is XADDed to the jobs
  stream *in the same script*, so the state never says "in flight" about a job that does not exist.
* ``result``: the job's result. The in-flight job is cleared; if a change is pending the caller plans again.
  The last finished job is remembered (``done``, ``done_members``): the same result delivered again (its first
  handler died before updating the rule statuses) is still applied to the statuses, and nothing else, as long as
  no later job has been sent.

So a target has at most one job in flight and one pending, whatever the number of replicas. A replica that
dies while planning, or a job whose result never comes, holds the target only until ``stale_plan_ms`` /
``stale_job_ms`` pass: the next change (or the sweeper) then takes it over.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from flareport_common.keys import Keys

Arg = bytes | str | int | float

MARK = """
local inflight = redis.call('HGET', KEYS[1], 'inflight')
local now = tonumber(ARGV[1])
if inflight then
  local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
  local limit = tonumber(ARGV[4])
  if string.sub(inflight, 1, 5) == 'plan:' then limit = tonumber(ARGV[3]) end
  if now - since < limit then
    redis.call('HSET', KEYS[1], 'pending', '1')
    return 0
  end
end
redis.call('HSET', KEYS[1], 'inflight', 'plan:' .. ARGV[2], 'since', ARGV[1])
redis.call('HDEL', KEYS[1], 'pending')
if ARGV[5] == '1' then redis.call('HDEL', KEYS[1], 'version') end
return 1
"""

COMMIT = """
if redis.call('HGET', KEYS[1], 'inflight') ~= 'plan:' .. ARGV[1] then return -1 end
if (redis.call('HGET', KEYS[1], 'version') or '') == ARGV[3] then
  if redis.call('HGET', KEYS[1], 'pending') == '1' then
    redis.call('HDEL', KEYS[1], 'pending')
    redis.call('HSET', KEYS[1], 'since', ARGV[6])
    return 2
  end
  redis.call('HDEL', KEYS[1], 'inflight', 'since')
  return 0
end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[4])  -- no MAXLEN: consumers trim what they handled
redis.call('HSET', KEYS[1], 'inflight', ARGV[2], 'since', ARGV[6], 'version', ARGV[3], 'members', ARGV[5])
redis.call('SADD', KEYS[3], ARGV[7])
return 1
"""

RESULT = """
local inflight = redis.call('HGET', KEYS[1], 'inflight')
if inflight ~= ARGV[1] then
  -- The last finished job's result again, and no later job sent since (nothing in flight, or only a plan):
  -- it is still the newest word on these rules.
  local idle = (not inflight) or string.sub(inflight, 1, 5) == 'plan:'
  if idle and redis.call('HGET', KEYS[1], 'done') == ARGV[1] then
    return {3, redis.call('HGET', KEYS[1], 'done_members') or ''}
  end
  return {0, ''}
end
local members = redis.call('HGET', KEYS[1], 'members') or ''
redis.call('HSET', KEYS[1], 'done', ARGV[1], 'done_members', members)
if ARGV[2] == '0' then redis.call('HDEL', KEYS[1], 'version') end
if redis.call('HGET', KEYS[1], 'pending') == '1' then
  redis.call('HSET', KEYS[1], 'inflight', 'plan:' .. ARGV[4], 'since', ARGV[3])
  redis.call('HDEL', KEYS[1], 'pending')
  return {2, members}
end
redis.call('HDEL', KEYS[1], 'inflight', 'since')
return {1, members}
"""

# Outcomes of commit.
LOST, UNCHANGED, SENT, AGAIN = -1, 0, 1, 2


@dataclass(frozen=True, slots=True)
class ResultOutcome:
    current: bool  # the result is for the job in flight, or for the last finished job (delivered again)
    plan_again: bool  # a change is pending: the caller now holds the target and must plan it
    members: bytes


class Coalescer:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, stale_plan_ms: int = 30_000, stale_job_ms: int = 600_000
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._mark = redis.register_script(MARK)
        self._commit = redis.register_script(COMMIT)
        self._result = redis.register_script(RESULT)
        self.stale_plan_ms = stale_plan_ms
        self.stale_job_ms = stale_job_ms

    async def mark(self, target: str, token: str, now_ms: int, *, force: bool = False) -> bool:
        """True: the caller holds the target and must plan it now. ``force`` forgets the last version."""
        args: list[Arg] = [now_ms, token, self.stale_plan_ms, self.stale_job_ms, "1" if force else "0"]
        return int(await self._mark(keys=[self._keys.target_state(target)], args=args)) == 1

    async def mark_many(self, targets: list[str], tokens: list[str], now_ms: int, force: list[bool]) -> list[bool]:
        """``mark`` for several targets in one round trip (a pipeline of the same script); ``force`` per target."""
        pipe = self._redis.pipeline(transaction=False)
        for target, token, forced in zip(targets, tokens, force, strict=True):
            args: list[Arg] = [now_ms, token, self.stale_plan_ms, self.stale_job_ms, "1" if forced else "0"]
            # EVAL, not the registered script: that would add a SCRIPT EXISTS round trip to every pipeline.
            pipe.eval(MARK, 1, self._keys.target_state(target), *args)
        return [int(held) == 1 for held in await pipe.execute()] if targets else []

    async def commit(
        self, target: str, token: str, job_id: str, version: str, payload: bytes, members: bytes, now_ms: int
    ) -> int:
        keys = [self._keys.target_state(target), self._keys.cf_jobs, self._keys.targets_index]
        args: list[Arg] = [token, job_id, version, payload, members, now_ms, target]
        return int(await self._commit(keys=keys, args=args))

    async def result(self, target: str, job_id: str, ok: bool, token: str, now_ms: int) -> ResultOutcome:
        args = [job_id, "1" if ok else "0", now_ms, token]
        code, members = await self._result(keys=[self._keys.target_state(target)], args=args)
        return ResultOutcome(current=int(code) != 0, plan_again=int(code) == 2, members=bytes(members or b""))
