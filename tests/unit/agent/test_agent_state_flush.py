"""The accepted sequence number is saved now and then, and only after it moved: an idle agent keeps no timer for it
(issue 23: idle must be idle; it woke every 10 s to find nothing to save)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flareport_agent.agent import Agent, Tuning
from flareport_agent.client import KEEPALIVE_SECONDS
from flareport_common.settings import AgentSettings
from fptest.waiting import wait_for


def _agent(tmp_path: Path, flush_s: float) -> Agent:
    settings = AgentSettings(
        master_url="http://127.0.0.1:9",
        api_key="agent-key-0123456789",
        docker_host="unix:///nonexistent.sock",
        cloudflared_image="cloudflared",
        data_dir=str(tmp_path / "agent-data"),
        label_prefix=None,
        log_level="warning",
        log_format="console",
        tz=None,
        health_port=0,
    )
    return Agent(settings, Tuning(state_flush_seconds=flush_s))


async def test_the_sequence_is_saved_once_after_it_moved_and_never_while_idle(tmp_path: Path) -> None:
    agent = _agent(tmp_path, flush_s=0.05)
    saves: list[int] = []
    agent.save_state = lambda: saves.append(agent.state.last_seq)  # type: ignore[method-assign]
    flusher = asyncio.create_task(agent._flush_state())
    try:
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        assert not [h for h in loop._scheduled if not h.cancelled()], "an idle flusher waits on no timer"  # type: ignore[attr-defined]
        agent._accepted(5)
        agent._accepted(7)  # accepted within one flush interval: one save
        agent._accepted(6)  # an older acknowledgement does not move it back

        async def saved() -> bool:
            return saves == [7]

        await wait_for(saved, timeout=5, what="one save of sequence 7")
        assert agent.state.last_seq == 7
        await asyncio.sleep(0)
        assert not [h for h in loop._scheduled if not h.cancelled()], "after the save, no timer until it moves"  # type: ignore[attr-defined]
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)


def test_a_connection_to_the_master_outlives_the_heartbeat_interval() -> None:
    # aiohttp's default keep-alive (15 s) expired it just before each 15 s heartbeat: a new connection every time.
    # Below the API's own keep-alive (aiohttp's server: 75 s), so the agent is the side that closes it.
    assert 15.0 < KEEPALIVE_SECONDS < 75.0
