"""External-cloudflared mode on a real Podman engine: the agent reports its containers and answers tunnel commands
with ``external`` without ever creating, replacing or removing a cloudflared; its status says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import docker

from flareport_agent.cloudflared import MANAGED_LABEL
from flareport_common.messages.commands import Decommission, RestartTunnel, StartTunnel, StopTunnel
from flareport_common.messages.events import Inventory, TunnelStatus
from flareport_common.protocol import CommandAckRequest
from fptest.agent_harness import Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0="


async def _ack(master: MasterDouble, command_id: str) -> CommandAckRequest:
    async def done() -> CommandAckRequest | None:
        return master.acks.get(command_id)

    found = await wait_for(done, timeout=20, what=f"the ack of command {command_id}")
    assert found is not None
    return found


def _owned(dclient: docker.DockerClient) -> list[Any]:
    found: list[Any] = dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=cloudflared"})
    return found


async def test_an_external_cloudflared_agent_publishes_its_containers_and_never_runs_cloudflared(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
) -> None:
    web = containers.run(
        {"flareport.enable": "true", "flareport.hostname": "web.example.test", "flareport.service": "http://web:80"}
    )
    # A network of this test's own: Podman engines on one machine share their network definitions.
    network = f"fpt-ext-{uuid.uuid4().hex[:6]}"
    running = start_agent(external_cloudflared=True, cloudflared_network=network)

    async def reported() -> bool:
        return any(isinstance(e, Inventory) and web.id in {c.container_id for c in e.containers} for e in master.events)

    await wait_for(reported, what="the labelled container in the agent's inventory")
    assert "external-cloudflared" in master.registrations[0].capabilities
    assert "cloudflared" not in master.registrations[0].capabilities

    started = await _ack(master, master.push(StartTunnel(tunnel_id="tun-ext", token=TOKEN, image="other/image:1")))
    assert started.ok, started.error
    assert started.result["action"] == "external"
    assert "external cloudflared" in started.result["detail"]
    assert running.agent.state.tunnel_id == "tun-ext", "the enrolled tunnel is kept (recovery, heartbeats)"

    async def external_state() -> bool:
        beats = [h for h in master.heartbeats if h.tunnel.tunnel_id == "tun-ext"]
        statuses = [e for e in master.events if isinstance(e, TunnelStatus)]
        return bool(beats) and beats[-1].tunnel.container_state == "external" and bool(statuses)

    await wait_for(external_state, what="heartbeats and tunnel_status showing the external mode")
    assert all(e.tunnel.container_state == "external" for e in master.events if isinstance(e, TunnelStatus))

    for command in (RestartTunnel(), StopTunnel()):
        ack = await _ack(master, master.push(command))
        assert ack.ok and ack.result["action"] == "external", (command, ack)
    decommissioned = await _ack(master, master.push(Decommission()))
    assert decommissioned.ok and decommissioned.result["tunnel"]["action"] == "external"
    await wait_for(lambda: _async(running.task.done()), what="the agent to exit after decommission")

    assert _owned(dclient) == [], "no cloudflared was ever created"
    assert [n for n in dclient.networks.list(names=[network]) if n.name == network] == [], "nor its network"


async def _async(value: bool) -> bool:
    return value
