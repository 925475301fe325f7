"""Recognising an event stream that delivers events it has already delivered.

Podman's ``file`` events logger (the one machines without journald use, and the one ``make run`` configures) keeps
its events in one file that it truncates when it grows past ``events_logfile_max_size`` (1 MB by default): it keeps
the newer part of the file and rewrites it. A follower of ``/events`` then reads the rewritten file from its start,
so the stream repeats hundreds of events, some of them minutes old. Applied as news, a repeated ``start`` would
publish a container that has long been removed, and a repeated ``create``/``start``/``rename`` would report names
out of order.

Docker delivers each event once, in time order; Podman's writers (the API service and each container's cleanup
process) append in nearly time order. So an event is *repeated* when

- it is older than the engine's clock read just before subscribing (``SystemTime`` of ``/info``, when the engine
  tells it: a socket proxy may refuse ``/info``),
- or it is older than the newest event seen on this subscription by more than ``TOLERANCE_NS``,
- or the very same event (time to the nanosecond, container, action) was delivered within that window.

The watcher answers a repeat by dropping the stream and subscribing again: the fresh snapshot it takes then covers
whatever the repeated part of the stream might have hidden, so a false alarm costs one container list and nothing
else. An event without ``timeNano`` is always taken as new.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import datetime
from typing import Any

# Wide enough for the reordering between Podman's writers, far narrower than what a truncation repeats.
TOLERANCE_NS = 2_000_000_000

EventKey = tuple[int, str, str]


def event_key(raw: dict[str, Any]) -> EventKey | None:
    """What identifies one event across deliveries: its time to the nanosecond, its container and its action;
    None for an event without ``timeNano``."""
    stamp = raw.get("timeNano")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        return None
    actor = raw.get("Actor") or {}
    return (stamp, str(actor.get("ID") or raw.get("id") or ""), str(raw.get("Action") or raw.get("status") or ""))


class ReplayGuard:
    """One per subscription: ``fresh(raw)`` is False for an event the stream has (or must have) delivered before."""

    def __init__(self, *, floor_ns: int | None = None, tolerance_ns: int = TOLERANCE_NS) -> None:
        self.tolerance_ns = tolerance_ns
        # Nothing delivered on this subscription can be older than the moment before it was made.
        self.floor = floor_ns or 0
        self.newest = 0
        # The events of the last ``tolerance_ns``, oldest first (arrival order is nearly time order).
        self._window: deque[tuple[int, EventKey]] = deque()
        self._seen: set[EventKey] = set()

    def fresh(self, raw: dict[str, Any]) -> bool:
        key = event_key(raw)
        if key is None:
            return True
        stamp = key[0]
        if stamp < self.floor or stamp < self.newest - self.tolerance_ns:
            return False
        if key in self._seen:
            return False
        self._seen.add(key)
        self._window.append((stamp, key))
        if stamp > self.newest:
            self.newest = stamp
            horizon = stamp - self.tolerance_ns
            while self._window and self._window[0][0] < horizon:
                self._seen.discard(self._window.popleft()[1])
        return True


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def rfc3339_ns(text: object) -> int | None:
    """``2026-11-28T02:53:34.566571528Z`` (Docker's and Podman's ``SystemTime``) -> ns since the epoch, or None."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    seconds, fraction, zone = match.groups()
    moment = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
