"""An agent's first heartbeat: at once when it has something to report that its registration did not say.

A fresh agent (no tunnel of its own, no operator's cloudflared) is alive and runs no tunnel, which its registration
already told the master; its first beat waits an interval. When a fleet boots together, that is a request to the API
and a message to the reconciler fewer per host at the busiest moment. An agent with a tunnel reports its state at
once: the master's record of it may be from before the agent restarted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from flareport_common.messages.events import Inventory
from flareport_common.settings import AgentSettings
from fptest.agent_harness import FAST, Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.waiting import already, wait_for

# Longer than any test waits: a beat seen here was sent at once, not on the interval.
SLOW_BEAT = replace(FAST, heartbeat_seconds=600.0)


async def test_a_fresh_agent_lets_its_registration_stand_for_its_first_heartbeat(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent(SLOW_BEAT)
    await wait_for(lambda: already(any(isinstance(e, Inventory) for e in master.events)), what="the agent's inventory")
    polls = master.polls
    # Two more long-polls (1 s each here): the agent has been talking to the master for a while.
    await wait_for(lambda: already(master.polls >= polls + 2), timeout=20, what="two more command polls")

    assert master.registrations, "it registered"
    assert master.heartbeats == [], "a fresh agent sent a first heartbeat that said nothing its registration did not"


async def test_an_agent_with_a_tunnel_sends_its_first_heartbeat_at_once(
    master: MasterDouble,
    containers: Containers,
    start_agent: Callable[..., RunningAgent],
    agent_settings: AgentSettings,
) -> None:
    data = Path(agent_settings.data_dir)
    os.mkdir(data, 0o700)
    (data / "state.json").write_text(json.dumps({"agent_id": master.agent_id, "tunnel_id": "tun-saved"}))
    start_agent(SLOW_BEAT)

    await wait_for(lambda: already(bool(master.heartbeats)), timeout=20, what="a first heartbeat at once")
    assert master.heartbeats[0].tunnel.tunnel_id == "tun-saved"
