"""Admitting agents' events into the shared events stream: a 2xx means the reconciler will handle the event.

One Lua script decides and writes atomically, so API replicas never race each other:

* **sequence numbers**: an event whose ``seq`` is at or below the agent's last accepted one is a duplicate (a
  retried batch) and is answered as such, not added again; duplicates cost nothing below;
* **the agent's rate** (``quotas.events_per_second``, bucket of ``quotas.events_burst``): a token bucket per agent
  in Redis, paid per new event. A batch larger than the bucket passes when the bucket is full and leaves it in
  debt, so the sustained rate holds whatever the batch size;
* **the backlog**: entries of the events stream that the reconciler's group has not handled yet (its ``lag``
  plus its pending list). At ``quotas.events_backlog`` or above, new events are refused.

Either refusal is a 429 with ``Retry-After``; the batch is refused whole (the agent's outbox keeps it and sends
it again), because the outbox drops a batch only when the answer is a success. Nothing is ever trimmed from the
stream here: ``XADD`` carries no ``MAXLEN``; the consumers trim what every group has handled
(``flareport_common.streams.trim``). The backlog limit is what keeps the stream bounded instead.

Fairness between agents follows from the two checks: one agent can put at most its burst plus its rate ahead of
another agent's event, and all agents together at most the backlog limit (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flareport_api.metrics import EVENTS
from flareport_api.quotas import refuse
from flareport_api.state import ApiContext
from flareport_common.keys import GROUP_RECONCILER

# A backlog drains at the reconciler's pace, which the API does not know; a short, fixed pause spreads the
# agents' retries without holding a legitimate event back for long once the backlog is below the limit.
BACKLOG_RETRY_S = 2.0

# KEYS[1] the agent's last accepted seq, KEYS[2] the events stream, KEYS[3] the agent's token bucket (hash).
# ARGV[1] rate (events/s), ARGV[2] burst, ARGV[3] backlog limit, ARGV[4] the group whose backlog counts,
# then (seq or "", payload) pairs from ARGV[5].
# Answers {"ok", accepted, last seq, duplicates}, {"rate", milliseconds until enough tokens} or
# {"backlog", entries not yet handled}. Nothing is written unless the answer is "ok".
ACCEPT_EVENTS_LUA = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local fresh = {}
local dups = {}
for i = 5, #ARGV, 2 do
  local seq = ARGV[i]
  if seq ~= '' and tonumber(seq) <= last then
    table.insert(dups, seq)
  else
    table.insert(fresh, ARGV[i + 1])
    if seq ~= '' then last = tonumber(seq) end
  end
end
local last_text = string.format('%d', last)
if #fresh == 0 then return {'ok', 0, last_text, dups} end

local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local tokens = burst
local bucket = redis.call('HMGET', KEYS[3], 'tokens', 'ms')
if bucket[1] then
  tokens = math.min(burst, tonumber(bucket[1]) + math.max(0, now - tonumber(bucket[2])) * rate / 1000)
end
local need = math.min(#fresh, burst)
if tokens < need then return {'rate', math.ceil((need - tokens) * 1000 / rate)} end

local backlog = 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  backlog = nil
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local f = {}
    for j = 1, #group, 2 do f[group[j]] = group[j + 1] end
    -- lag is nil when Redis cannot tell (entries deleted inside the range): the stream's length bounds it.
    if f['name'] == ARGV[4] and f['lag'] then backlog = f['lag'] + f['pending'] end
  end
  if not backlog then backlog = redis.call('XLEN', KEYS[2]) end
end
if backlog >= tonumber(ARGV[3]) then return {'backlog', backlog} end

tokens = tokens - #fresh
redis.call('HSET', KEYS[3], 'tokens', tostring(tokens), 'ms', string.format('%d', now))
-- A full bucket is the same as no key: let an idle agent's bucket expire.
redis.call('PEXPIRE', KEYS[3], math.ceil((burst - tokens) * 1000 / rate) + 1000)
for _, payload in ipairs(fresh) do redis.call('XADD', KEYS[2], '*', 'm', payload) end
if last >= 0 then redis.call('SET', KEYS[1], last_text) end
return {'ok', #fresh, last_text, dups}
"""


@dataclass(frozen=True, slots=True)
class Accepted:
    accepted: int
    last_seq: int  # -1: the agent never sent a numbered event
    duplicates: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    limit: str  # "events_per_second" or "events_backlog"
    message: str
    retry_after: float


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def interpret(reply: list[Any], *, rate: float, backlog_limit: int) -> Accepted | Refused:
    """The script's answer as a value (pure: tested without Redis)."""
    kind = _text(reply[0])
    if kind == "ok":
        return Accepted(int(reply[1]), int(_text(reply[2])), tuple(int(_text(d)) for d in reply[3]))
    if kind == "rate":
        wait = max(int(reply[1]), 1) / 1000
        return Refused("events_per_second", f"over this agent's rate of {rate:g} events per second", wait)
    return Refused(
        "events_backlog",
        f"{int(reply[1])} events are waiting for the reconciler (limit {backlog_limit}); send them again later",
        BACKLOG_RETRY_S,
    )


async def admit(ctx: ApiContext, agent_id: str, events: list[tuple[int | None, bytes]]) -> Accepted | Refused:
    """Run the accept script for (seq, encoded event) pairs; refusals are returned, not raised."""
    quotas = ctx.settings.quotas
    args: list[Any] = [repr(quotas.events_per_second), quotas.events_burst, quotas.events_backlog, GROUP_RECONCILER]
    for seq, payload in events:
        args += ["" if seq is None else str(seq), payload]
    keys = [ctx.keys.agent_last_seq(agent_id), ctx.keys.events, ctx.keys.agent_event_bucket(agent_id)]
    reply = await ctx.scripts["accept_events"](keys=keys, args=args)
    return interpret(reply, rate=quotas.events_per_second, backlog_limit=quotas.events_backlog)


async def accept(ctx: ApiContext, agent_id: str, events: list[tuple[int | None, bytes]]) -> Accepted:
    """Admit the events or raise the 429 naming the limit (recorded for the agent's page and metrics)."""
    result = await admit(ctx, agent_id, events)
    if isinstance(result, Refused):
        EVENTS.labels("refused").inc(len(events))
        raise await refuse(
            ctx.redis, ctx.keys, agent_id, result.limit, result.message, status=429, retry_after=result.retry_after
        )
    EVENTS.labels("accepted").inc(result.accepted)
    EVENTS.labels("duplicate").inc(len(result.duplicates))
    return result
