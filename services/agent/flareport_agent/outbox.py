"""The bounded event buffer between Docker watching and the master, and the loop that sends it in batches.

Watching never waits for the master: ``put`` only appends. Each event gets the next per-agent sequence number
when it is buffered, so the master sees them in the order Docker produced them. When the buffer is full (the master
has been away for a long time) its content is thrown away and replaced by one ``inventory`` snapshot of what is
running now — the master loses no state, only the history in between, which it does not need (rules are
level-based). The sender removes events from the buffer only after the master accepted them, and persists the
last accepted sequence number (through ``on_accepted``). A lone event after a quiet spell is sent at once; only
an event that arrives within ``linger`` of the last accepted batch (a burst) waits ``linger`` for the rest of the
burst to gather, and what arrives while a batch is in flight goes in the next one. Waiting out an absent master
(capped backoff, ``Retry-After``) and a rejected key is the link's part (``link.py``).

A batch the master refuses (a 4xx other than 401/403/429: invalid field, size quota) is never retried as is, and
never costs the events around the refused one: the sender sends what comes before the event the error names
(``events[i]...``), or probes one event at a time when it names none, and drops only the refused event, logged
with the master's reason and field; a dropped change (not a snapshot) is followed by one inventory snapshot.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Callable

import msgspec

from flareport_agent.client import RequestRejected
from flareport_agent.link import MasterLink, Missed
from flareport_agent.linkpolicy import Reaction
from flareport_agent.metrics import BUFFER_OVERFLOWS, BUFFERED_EVENTS, EVENT_BATCHES, EVENTS_SENT
from flareport_common import tracing
from flareport_common.logs import get_logger
from flareport_common.messages.events import Inventory, TunnelStatus
from flareport_common.protocol import AgentEvent

log = get_logger("flareport.agent.outbox")

_EVENT_INDEX = re.compile(r"^events\[(\d+)\]")


class Outbox:
    def __init__(self, *, capacity: int, last_seq: int, snapshot: Callable[[], AgentEvent]) -> None:
        self.capacity = capacity
        self.seq = last_seq
        self.agent_id = ""
        self._snapshot = snapshot
        self._buffer: deque[AgentEvent] = deque()
        self._ready = asyncio.Event()
        # Bumped whenever the buffer is replaced, so a batch in flight is not popped from a different buffer.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._buffer)

    def put(self, event: AgentEvent) -> None:
        if len(self._buffer) >= self.capacity:
            BUFFER_OVERFLOWS.inc()
            log.warning("events.buffer_full", dropped=len(self._buffer), hint="replaced by an inventory snapshot")
            self._buffer.clear()
            self._generation += 1
            event = self._snapshot()
        self._buffer.append(self._stamp(event))
        BUFFERED_EVENTS.set(len(self._buffer))
        self._ready.set()

    def put_snapshot(self) -> None:
        self.put(self._snapshot())

    def _stamp(self, event: AgentEvent) -> AgentEvent:
        # Tunnel status reports are not inventory changes and carry no sequence number.
        if isinstance(event, TunnelStatus):
            return msgspec.structs.replace(event, agent_id=self.agent_id)
        self.seq += 1
        return msgspec.structs.replace(event, seq=self.seq, agent_id=self.agent_id)

    def rebase(self, last_seq: int, agent_id: str) -> None:
        """After registering: continue after the master's last accepted number, renumbering what is buffered
        (an agent that lost its data directory would otherwise have its events ignored as stale)."""
        self.agent_id = agent_id
        pending = list(self._buffer)
        first = min((e.seq for e in pending if not isinstance(e, TunnelStatus)), default=self.seq + 1)
        self.seq = max(last_seq, first - 1)
        self._buffer = deque(self._stamp(event) for event in pending)
        self._generation += 1

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def peek(self, limit: int) -> tuple[int, tuple[AgentEvent, ...]]:
        return self._generation, tuple(self._buffer[i] for i in range(min(limit, len(self._buffer))))

    def done(self, generation: int, count: int) -> None:
        if generation == self._generation:
            for _ in range(min(count, len(self._buffer))):
                self._buffer.popleft()
        if not self._buffer:
            self._ready.clear()
        BUFFERED_EVENTS.set(len(self._buffer))


def refused_index(exc: RequestRejected, size: int) -> int | None:
    """The position of the event the master's error names (``events[3].container...``), when it names one."""
    match = _EVENT_INDEX.match(exc.field or "")
    if match is None or int(match[1]) >= size:
        return None
    return int(match[1])


async def send_loop(
    outbox: Outbox,
    link: MasterLink,
    *,
    max_batch: int,
    linger: float,
    on_accepted: Callable[[int], None],
    on_sent: Callable[[tuple[AgentEvent, ...]], None] | None = None,
    starting: Callable[[], int] | None = None,
) -> None:
    """Send until cancelled. The link waits out an absent master and a rejected key (``linkpolicy.py``); a batch
    is taken from the buffer afresh after every wait, as the buffer may have been replaced meanwhile. ``starting``:
    the containers created and not yet started, read as each batch goes (``EventBatch.starting``)."""
    probe: int | None = None  # a smaller batch while looking for the event the master refuses
    loop = asyncio.get_running_loop()
    last_sent = -math.inf  # when the last batch was accepted: a lone event after a quiet spell goes at once
    while True:
        await outbox.wait_ready()
        if linger and loop.time() - last_sent < linger:
            await asyncio.sleep(linger)  # in a burst: let it gather into one batch
        await link.opened()
        generation, batch = outbox.peek(min(max_batch, probe or max_batch))
        if not batch:
            outbox.done(generation, 0)
            continue
        response = await link.send_events(batch, starting() if starting is not None else None)
        if isinstance(response, Missed):
            if isinstance(response.error, RequestRejected):
                EVENT_BATCHES.labels(outcome="rejected").inc()
                if response.error.code == "body_too_large" and len(batch) > 1:
                    max_batch = max(1, len(batch) // 2)
                    log.warning("events.batch_halved", max_batch=max_batch)
                    continue
                probe = _refused(outbox, generation, batch, response.error)
            elif response.reaction is Reaction.RETRY:
                EVENT_BATCHES.labels(outcome="retry").inc()
            continue
        probe = None
        last_sent = loop.time()
        EVENT_BATCHES.labels(outcome="accepted").inc()
        _observe_outbox(batch)
        for event in batch:
            EVENTS_SENT.labels(type=type(event).__struct_config__.tag).inc()
        outbox.done(generation, len(batch))
        on_accepted(max([response.last_seq, *(e.seq for e in batch if not isinstance(e, TunnelStatus))]))
        if on_sent is not None:
            on_sent(batch)


def _observe_outbox(batch: tuple[AgentEvent, ...]) -> None:
    # Once per batch, for the event that waited longest (as the API does for agent_to_api).
    received = [t.agent_us for t in (getattr(e, "trace", None) for e in batch) if t is not None and t.agent_us]
    tracing.observe("agent_outbox", min(received, default=0), tracing.now_us())


def _refused(outbox: Outbox, generation: int, batch: tuple[AgentEvent, ...], exc: RequestRejected) -> int | None:
    """Narrow a refused batch down to the refused event and drop only that; returns the next batch's size cap."""
    index = refused_index(exc, len(batch))
    if len(batch) > 1 and index != 0:
        # Send what comes before the named event (the master checked it), or look for it: halves for a size quota
        # the batch as a whole may exceed (distinct hostnames), one event at a time otherwise.
        narrowed = index or (max(1, len(batch) // 2) if exc.status == 413 else 1)
        log.warning("events.batch_narrowed", error=str(exc), send_first=narrowed)
        return narrowed
    # Retrying this event can never succeed: drop it alone. Each refusal drops an event or narrows the batch, so a
    # refused event cannot become a retry loop.
    event = batch[0]
    EVENT_BATCHES.labels(outcome="dropped").inc()
    log.error(
        "events.dropped",
        type=type(event).__struct_config__.tag,
        seq=getattr(event, "seq", None),
        field=exc.field,
        error=str(exc),
        hint="the master refused this event; its rules are not published until the cause is fixed",
    )
    outbox.done(generation, 1)
    if not isinstance(event, Inventory | TunnelStatus):
        # The master missed a change: a snapshot tells it what runs now. A refused snapshot is not followed by
        # another one (that would repeat forever); the next change or reconnect sends a fresh one.
        outbox.put_snapshot()
    return None
