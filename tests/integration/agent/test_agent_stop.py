"""Stopping the agent ends its engine watcher, whatever the watcher was doing at that moment."""

from __future__ import annotations

from collections.abc import Callable

from fptest.agent_harness import RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for


async def test_an_agent_stopped_while_it_connects_to_the_engine_leaves_no_watcher_behind(
    master: MasterDouble, start_agent: Callable[..., RunningAgent]
) -> None:
    # Stopped at once: the watcher thread is still connecting (engine time, subscription), so the stop finds no
    # stream to close. The thread must notice, or it blocks on the new stream until the engine sends an event.
    running = start_agent()

    async def watching() -> bool:
        return running.agent._watcher is not None

    await wait_for(watching, what="the watcher started")
    await stop_and_check_watcher(running)


async def test_an_agent_stopped_once_connected_leaves_no_watcher_behind(
    master: MasterDouble, start_agent: Callable[..., RunningAgent]
) -> None:
    running = start_agent()

    async def connected() -> bool:
        return running.agent.docker_connected

    await wait_for(connected, what="the engine's event stream")
    await stop_and_check_watcher(running)


async def stop_and_check_watcher(running: RunningAgent) -> None:
    watcher = running.agent._watcher
    assert watcher is not None
    await running.stop()
    thread = watcher._thread
    assert thread is not None and not thread.is_alive(), "the watcher thread outlived the agent"
