"""The Swarm watcher's event nudge (swarmwatch.EventNudge): a change made before its event stream was subscribed
still makes the watcher list again at once, not at the next round (120 s in the integration test that found it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

from flareport_agent.swarmwatch import EventNudge


class QuietEngine:
    """An engine whose event stream is open and says nothing: the service was created before it was subscribed."""

    def __init__(self) -> None:
        self.subscribed = threading.Event()
        self.closed = threading.Event()

    def events(self, **_: Any) -> Iterator[dict[str, Any]]:
        self.subscribed.set()
        return self._quiet()

    def _quiet(self) -> Iterator[dict[str, Any]]:
        self.closed.wait(30)
        yield from ()

    def close(self) -> None:
        self.closed.set()


async def test_the_nudge_wakes_the_watcher_once_it_has_subscribed_though_no_event_came() -> None:
    engine = QuietEngine()
    wake = asyncio.Event()
    nudge = EventNudge(lambda: engine, asyncio.get_running_loop(), wake)
    nudge.start()
    try:
        await asyncio.wait_for(wake.wait(), 10)
        assert engine.subscribed.is_set(), "woken only after the stream was open: nothing after it is missed"
    finally:
        nudge.stop()
        engine.close()
        await asyncio.to_thread(nudge.join)
