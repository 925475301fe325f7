"""Podman's event tick halved: a second subscription to the engine's events, half a tick after the first.

Podman's ``file`` events logger (the one machines without journald use) hands events to each ``/events``
follower by polling its file every 250 ms (``TICK``): an event waits for its follower's next poll, 125 ms on
average and up to 250 ms, before the agent sees it. Each follower polls on a clock of its own, started when it
subscribed (when the answer's headers arrive) and steady afterwards: measured on Podman 4.3, two followers' clocks
moved apart by about 10 ms over two minutes. Two followers half a tick apart halve the wait: every event reaches
the agent within 125 ms of being written, 62 ms on average.

The first subscription stays the one that counts (``watcher.py``: its snapshot, reconnects and replay guard); the
second only delivers sooner. ``Merge`` passes on the first copy of each event and drops the other one, in stream
order, and learns from each pair of copies how far apart the two followers poll: off by more than ``TOLERANCE``
from half a tick, the second follower subscribes again at the right moment (``start_at``).

Order: each follower delivers the file in order, and the first copy of each event is passed on under one lock, so
the agent sees the file's order whichever follower is ahead. A snapshot of the first subscription forgets every
copy seen so far (``reset``): an event the second follower passed on before the snapshot went may have happened
after the list was taken, and its other copy must then be applied on top of the snapshot, as the first
subscription's own events always are. Re-applying an event the snapshot already shows is harmless.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from flareport_agent.replay import EventKey, event_key

TICK = 0.25  # seconds between two polls of Podman's events file by one follower (its tail library's interval)
HALF = TICK / 2
TOLERANCE = 0.035  # the second follower's offset may stray this far from half a tick before it subscribes again
# At most one new placement per this long: on an engine without a tick (Docker pushes each event to every
# subscriber at once, ``AGENT_EVENT_STREAMS=2``) copies always come together, and placing again would not help.
REALIGN_SECONDS = 60.0
KEEP_SECONDS = 5.0  # a copy comes within one tick of the other; longer only across a reconnect
MAX_KEYS = 10_000  # a flood of events within KEEP_SECONDS keeps memory bounded (an older copy then passes twice)

FIRST = 0
SECOND = 1


def start_at(now: float, anchor: float, lead: float) -> float:
    """When to subscribe the second follower so that it polls half a tick after the first: the first moment at
    or after ``now`` whose answer (``lead`` seconds after the call) comes half a tick after a poll of the first
    follower (``anchor``, a moment it delivered or subscribed)."""
    target = anchor + HALF - lead
    return target - ((target - now) // TICK) * TICK


class Merge:
    """The events of both followers, each passed on once (thread-safe: each follower reads in a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[EventKey, tuple[int, float]] = {}
        self._order: deque[tuple[float, EventKey]] = deque()
        self.offset: float | None = None  # the second follower's polls after the first's, modulo a tick
        self.anchor: float | None = None  # when the first follower last delivered or subscribed
        self.generation = 0  # raised at each subscription of the first follower
        self._realigned: float | None = None  # when the second follower was last placed again for drifting

    def subscribed(self, at: float) -> None:
        """The first follower subscribed at ``at``: its polls start then; the second must place itself again."""
        with self._lock:
            self.anchor = at
            self.offset = None
            self.generation += 1

    def snapshot(self, put: Callable[[], None]) -> None:
        """Pass the first follower's snapshot on, and forget every copy seen so far (see the module's doc)."""
        with self._lock:
            self._seen.clear()
            self._order.clear()
            put()

    def admit(self, raw: dict[str, Any], stream: int, at: float, put: Callable[[], None]) -> bool:
        """Call ``put`` (under the lock, so that passed events keep the files' order) unless the other follower
        already delivered this event; True when passed on. ``at``: when the follower read it (monotonic)."""
        key = event_key(raw)
        with self._lock:
            if stream == FIRST:
                self.anchor = at
            if key is None:
                # Nothing to match a copy by: the first follower's is passed, the second's is left to it.
                if stream == FIRST:
                    put()
                return stream == FIRST
            seen = self._seen.get(key)
            if seen is not None:
                other, then = seen
                if other != stream:
                    first_at, second_at = (then, at) if other == FIRST else (at, then)
                    self.offset = (second_at - first_at) % TICK
                return False
            self._seen[key] = (stream, at)
            self._order.append((at, key))
            while self._order and (len(self._order) > MAX_KEYS or self._order[0][0] < at - KEEP_SECONDS):
                self._seen.pop(self._order.popleft()[1], None)
            put()
            return True

    def misaligned(self, now: float) -> bool:
        """Whether the last pair of copies showed the followers polling too close together, and the second may be
        placed again (not within ``REALIGN_SECONDS`` of its last placement for drifting)."""
        offset = self.offset
        if offset is None or abs(offset - HALF) <= TOLERANCE:
            return False
        return self._realigned is None or now - self._realigned >= REALIGN_SECONDS

    def realigning(self, now: float) -> None:
        """The second follower subscribes again: its old offset no longer says anything."""
        with self._lock:
            self.offset = None
            self._realigned = now
