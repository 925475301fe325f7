"""Admitting agents' events into the shared events stream: a 2xx means the reconciler will handle the event.

One Lua script (``lua/accept_events.lua``) decides and writes atomically, so API replicas never race each other:

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
from flareport_api.scripts import AcceptEvents, Admission
from flareport_api.state import ApiContext
from flareport_common.keys import GROUP_RECONCILER
from flareport_common.replies import text

# A backlog drains at the reconciler's pace, which the API does not know; a short, fixed pause spreads the
# agents' retries without holding a legitimate event back for long once the backlog is below the limit.
BACKLOG_RETRY_S = 2.0


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


def interpret(reply: list[Any], *, rate: float, backlog_limit: int) -> Accepted | Refused:
    """The script's answer as a value (pure: tested without Redis)."""
    kind = text(reply[0])
    if kind == Admission.OK:
        return Accepted(int(reply[1]), int(text(reply[2])), tuple(int(text(d)) for d in reply[3]))
    if kind == Admission.RATE:
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
    accept_events: AcceptEvents = ctx.scripts["accept_events"]
    reply = await accept_events(
        last_seq_key=ctx.keys.agent_last_seq(agent_id),
        stream=ctx.keys.events,
        bucket_key=ctx.keys.agent_event_bucket(agent_id),
        rate=quotas.events_per_second,
        burst=quotas.events_burst,
        backlog_limit=quotas.events_backlog,
        group=GROUP_RECONCILER,
        events=events,
    )
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
