"""Coalescing of Cloudflare jobs per target, shared by all replicas through three small Lua scripts
(``lua/target_mark.lua``, ``target_commit.lua``, ``target_result.lua``).

Each target (``tunnel:<id>``, ``zone:<name>``, ``access:<host><path>``) has a state hash with:
``inflight`` (the job id awaiting its result, or ``plan:<token>`` while a replica is building the job),
``since`` (when that started, ms), ``pending`` (a change arrived meanwhile), ``version`` (the last emitted
desired version) and ``members`` (the rule keys of that job, for rule statuses when its result comes).

* ``mark``: a change touched the target. If nothing is in flight the caller takes the target (``plan:<token>``)
  and plans it: at once for a lone change (it pays no waiting window), or at the end of the target's window (see
  below). Otherwise ``pending`` is set and the caller is done: the change is folded into the next job.
* ``commit``: the planner's job. If the version equals the last emitted one no job is sent (and the target is
  released, or planned again if something became pending meanwhile). Otherwise the job is XADDed to the jobs
  stream *in the same script*, so the state never says "in flight" about a job that does not exist.
* ``result``: the job's result. The in-flight job is cleared; if a change is pending the caller plans again, a
  window after the newest change (at once if that is past). The last finished job is remembered (``done``,
  ``done_members``): the same result delivered again (its first handler died before updating the rule statuses)
  is still applied to the statuses, and nothing else, as long as no later job has been sent.

So a target has at most one job in flight and one pending, whatever the number of replicas. A replica that
dies while planning, or a job whose result never comes, holds the target only until ``stale_plan_ms`` /
``stale_job_ms`` pass: the next change (or the sweeper) then takes it over.

**The window.** Containers started one after another (``docker compose up``: one every 100-200 ms) would each find
the target idle again and each cost a job of its own (a DNS batch, a configuration read and write). So once a target
was written (its last job's result came ``done_at``), changes arriving within its window are held and planned
together when the window ends — or later, should changes still be arriving then: the hold is extended to a window
after the newest one, up to ``max_ms`` in all (``target_begin.lua``). A change of ``burst_weight`` hostnames or more
(a large batch from an agent: more is on its way) waits a window too. A lone change on a quiet target is still
planned at once. An agent that has containers created and not yet started says so with its changes
(``Run.NEXT``, ``Run.MORE``): they wait a window too, and its word that none is left (``Run.ENDED``) plans a target
held for that run at once, while the budget is not short, a window after the target's last job at the earliest (and
for a run of single containers only while Cloudflare answers fast). The window (``lua/coalesce_window.lua``) is
``base_ms``, or five times the last job's duration when Cloudflare is slow, grows with the number of jobs the target
had lately and as the shared rate budget runs low (``pressure``), and never exceeds ``max_ms`` (docs/reconciler.md,
"Coalescing"). A target held for a window is in ``Keys.targets_waiting`` until its plan commits: the replica holding
it plans it when the window ends, and if that replica died, the sweeper finds it there once ``stale_plan_ms``
passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis.asyncio as aioredis

from flareport_common import lua
from flareport_common.keys import Keys
from flareport_common.replies import text
from flareport_common.streams.codec import FIELD

_MARK = lua.load("flareport_reconciler", "target_mark")
_COMMIT = lua.load("flareport_reconciler", "target_commit")
_RESULT = lua.load("flareport_reconciler", "target_result")
_BEGIN = lua.load("flareport_reconciler", "target_begin")


class Marked(IntEnum):
    """What ``target_mark.lua`` answers."""

    PENDING = 0  # folded into the next job
    HELD = 1  # the caller holds the target and must plan it now


class Run(IntEnum):
    """What the change's agent said about the run of changes it belongs to (``EventBatch.starting``)."""

    NONE = 0  # nothing: an old agent, or a change that no agent sent (an admin's, a reconcile)
    NEXT = 1  # the agent has one container created and not yet started: another change is on its way
    ENDED = 2  # none left to start: a target held for this run's window is planned now
    MORE = 3  # several created and not yet started (docker compose up): more changes are on their way


class Committed(IntEnum):
    """What ``target_commit.lua`` answers."""

    LOST = -1  # the caller's plan went stale and another replica took the target over
    UNCHANGED = 0  # same version as the last job sent: no job, the target is released
    SENT = 1
    AGAIN = 2  # same version, but a change became pending: the caller still holds the target, plans again


class Answered(IntEnum):
    """What ``target_result.lua`` answers first."""

    STALE = 0  # neither the job in flight nor the last finished one: nothing to apply
    FINISHED = 1
    PLAN_AGAIN = 2  # a change is pending: the caller now holds the target
    REPEATED = 3  # the last finished job's result again: its rule statuses still apply


@dataclass(frozen=True, slots=True)
class ResultOutcome:
    current: bool  # the result is for the job in flight, or for the last finished job (delivered again)
    plan_again: bool  # a change is pending: the caller now holds the target and must plan it
    members: bytes
    delay_ms: int = 0  # when plan_again: plan after this long (the target's window)


@dataclass(frozen=True, slots=True)
class Window:
    """The coalescing window's parameters (see the module docstring). ``max_ms`` 0: every change planned at once."""

    base_ms: int = 0
    max_ms: int = 0
    burst_weight: int = 50


class Coalescer:
    """The coalescing scripts' typed wrappers: the only code that knows their KEYS/ARGV order.

    The scripts are registered (EVALSHA, loaded again by redis-py if a restarted Redis lost its cache) where they
    run on the client, and sent with EVAL from ``mark_many``'s pipeline (see ``scripts``)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        stale_plan_ms: int = 30_000,
        stale_job_ms: int = 600_000,
        window: Window | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._mark = redis.register_script(_MARK.source)
        self._commit = redis.register_script(_COMMIT.source)
        self._result = redis.register_script(_RESULT.source)
        self._begin = redis.register_script(_BEGIN.source)
        self.stale_plan_ms = stale_plan_ms
        self.stale_job_ms = stale_job_ms
        self.window = window or Window()

    def _mark_args(
        self, now_ms: int, token: str, force: bool, target: str, weight: int, pressure: int, run: Run
    ) -> list[Any]:
        w = self.window
        return [
            now_ms, token, self.stale_plan_ms, self.stale_job_ms, "1" if force else "0",
            target, weight, w.base_ms, w.max_ms, w.burst_weight, pressure, int(run),
        ]  # fmt: skip

    def _mark_keys(self, target: str) -> list[str]:
        return [self._keys.target_state(target), self._keys.targets_waiting]

    async def mark(
        self,
        target: str,
        token: str,
        now_ms: int,
        *,
        force: bool = False,
        weight: int = 1,
        pressure: int = 1,
        run: Run = Run.NONE,
    ) -> int | None:
        """None: folded into the next job. Else the caller holds the target and must plan it after that many ms
        (0: now). ``force`` forgets the last version; ``weight``: hostnames the change touched; ``run``: what its
        agent said of the changes still to come."""
        args = self._mark_args(now_ms, token, force, target, weight, pressure, run)
        code, delay = await self._mark(keys=self._mark_keys(target), args=args)
        return int(delay) if Marked(int(code)) == Marked.HELD else None

    async def mark_many(
        self,
        targets: list[str],
        tokens: list[str],
        now_ms: int,
        force: list[bool],
        *,
        weight: int = 1,
        pressure: int = 1,
        run: Run = Run.NONE,
    ) -> list[int | None]:
        """``mark`` for several targets in one round trip (a pipeline of the same script); ``force`` per target."""
        if not targets:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for target, token, forced in zip(targets, tokens, force, strict=True):
            # EVAL, not the registered script: that would add a SCRIPT EXISTS round trip to every pipeline.
            args = self._mark_args(now_ms, token, forced, target, weight, pressure, run)
            _MARK.eval(pipe, self._mark_keys(target), args)
        answers = await pipe.execute()
        return [int(delay) if Marked(int(code)) == Marked.HELD else None for code, delay in answers]

    async def begin(
        self, target: str, token: str, now_ms: int, *, pressure: int = 1, extend: bool = True
    ) -> int | None:
        """A plan held for a window is due. None: another replica took the target over. 0: plan now (what was
        folded in is no longer pending). Otherwise changes are still arriving and the hold was extended by that
        many ms (never past ``max_ms`` in all); ``extend=False`` begins now whatever arrives."""
        w = self.window
        args: list[Any] = [token, now_ms, target, w.base_ms, w.max_ms, pressure, "1" if extend else "0"]
        answer = int(await self._begin(keys=self._mark_keys(target), args=args))
        return None if answer < 0 else answer

    async def commit(
        self, target: str, token: str, job_id: str, version: str, payload: bytes, members: bytes, now_ms: int
    ) -> Committed:
        """Send the job (``payload``, under the stream codec's field) unless ``version`` is the last one sent."""
        keys = [
            self._keys.target_state(target), self._keys.cf_jobs_for(target), self._keys.targets_index,
            self._keys.targets_waiting,
        ]  # fmt: skip
        args: list[Any] = [token, job_id, version, payload, members, now_ms, target, FIELD]
        return Committed(int(await self._commit(keys=keys, args=args)))

    async def result(
        self,
        target: str,
        job_id: str,
        ok: bool,
        token: str,
        now_ms: int,
        *,
        pressure: int = 1,
        writes: int = 1,
        cloudflare_ms: int | None = None,
    ) -> ResultOutcome:
        """``writes``: the Cloudflare writes the job made; its window grows with its duration per write, which is
        ``cloudflare_ms`` (its calls' answer time, from the worker) when known, else commit to result."""
        w = self.window
        took = -1 if cloudflare_ms is None else max(0, cloudflare_ms)
        args: list[Any] = [
            job_id, "1" if ok else "0", now_ms, token, target, w.base_ms, w.max_ms, pressure, writes, took
        ]  # fmt: skip
        code, members, delay = await self._result(keys=self._mark_keys(target), args=args)
        answer = Answered(int(code))
        return ResultOutcome(
            current=answer != Answered.STALE,
            plan_again=answer == Answered.PLAN_AGAIN,
            members=bytes(members or b""),
            delay_ms=int(delay),
        )

    async def overdue(self, older_than_ms: int, limit: int) -> list[str]:
        """Targets whose window ended before ``older_than_ms`` and that are still not planned (their replica
        died): the sweeper takes them over."""
        names = await self._redis.zrangebyscore(self._keys.targets_waiting, "-inf", older_than_ms, start=0, num=limit)
        return [text(n) for n in names]

    async def forget_waiting(self, names: list[str]) -> None:
        if names:
            await self._redis.zrem(self._keys.targets_waiting, *names)
