"""The Swarm watcher's event nudge (swarmwatch.EventNudge): a change made before its event stream was subscribed
still makes the watcher list again at once, not at the next round (120 s in the integration test that found it)."""

from __future__ import annotations

import asyncio

from flareport_agent.swarmwatch import EventNudge
from fptest.quiet_engine import QuietEngine


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
