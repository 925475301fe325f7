"""The agent on a real single-node Swarm manager: labelled services are reported (not their task containers), follow
updates, scaling to zero and back and removal; cloudflared runs as a service with the token in a Swarm secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import docker
import docker.types
import pytest

from flareport_agent.cloudflared import MANAGED_LABEL, MANAGED_VALUE, TUNNEL_ID_LABEL
from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_common.messages.commands import ResyncInventory, StartTunnel, StopTunnel
from flareport_common.messages.events import ContainerStart, ContainerStop, Inventory
from flareport_common.protocol import CommandAckRequest
from fptest.agent_harness import FAST, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.dockerd import LocalDockerd
from fptest.waiting import already, wait_for

pytestmark = pytest.mark.parametrize("engine", ["swarm"], indirect=True)
SWARM = replace(FAST, swarm_poll_seconds=0.2)
TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic3dhcm0tc2VjcmV0In0="


@pytest.fixture
def manager(swarm: LocalDockerd) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=swarm.docker_host)
    yield client
    client.close()
    swarm.remove_all()


def service_reports(master: MasterDouble, service_id: str) -> list[str]:
    out: list[str] = []
    for event in master.container_events():
        if isinstance(event, ContainerStart) and event.container.container_id == service_id:
            out.append("start:" + ",".join(r.hostname for r in event.container.rules))
        elif isinstance(event, ContainerStop) and event.container_id == service_id:
            out.append(f"stop:{event.action}")
    return out


async def test_a_labelled_service_is_published_while_it_has_running_tasks(
    master: MasterDouble, manager: docker.DockerClient, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent(SWARM)
    await wait_for(master.inventory_seen, what="the first inventory snapshot")
    name = f"fpt-{uuid.uuid4().hex[:6]}"
    service = manager.services.create(
        BUSYBOX_IMAGE,
        name=name,
        # The hostname on the service (a stack's deploy.labels), the service URL on its containers (labels).
        labels={"flareport.enable": "true", "flareport.hostname": "svc.example.com"},
        container_labels={"dockflare.service": "http://web:8080"},
        mode=docker.types.ServiceMode("replicated", replicas=1),
    )

    async def reported(expected: list[str]) -> bool:
        return service_reports(master, service.id) == expected

    await wait_for(lambda: reported(["start:svc.example.com"]), what="the service reported once a task runs")
    start = next(e for e in master.container_events() if isinstance(e, ContainerStart))
    assert start.container.name == name and start.container.image == BUSYBOX_IMAGE
    assert start.container.rules[0].service == "http://web:8080", "container labels of the spec count too"
    reported_ids = {e.container.container_id for e in master.container_events() if isinstance(e, ContainerStart)}
    assert reported_ids == {service.id}, "the task's container is not reported on its own"

    ack = master.push(ResyncInventory())
    await wait_for(lambda: already(ack in master.acks), what="the resync acked")

    async def inventory_has_service() -> bool:
        last = [e for e in master.events if isinstance(e, Inventory)][-1]
        return [c.container_id for c in last.containers] == [service.id]

    await wait_for(inventory_has_service, what="a snapshot that covers the service")

    service.reload()
    service.update(labels={"flareport.enable": "true", "flareport.hostname": "moved.example.com"})
    steps = ["start:svc.example.com", "start:moved.example.com"]
    await wait_for(lambda: reported(steps), what="a label update reported as a new start")

    service.reload()
    service.scale(0)
    steps.append("stop:stop")
    await wait_for(lambda: reported(steps), what="scaling to zero reported as a stop")
    service.reload()
    service.scale(1)
    steps.append("start:moved.example.com")
    await wait_for(lambda: reported(steps), what="scaling back reported as a start")
    service.remove()
    steps.append("stop:destroy")
    await wait_for(lambda: reported(steps), what="the removal reported as destroy")


async def acked(master: MasterDouble, command_id: str) -> CommandAckRequest:
    async def done() -> CommandAckRequest | None:
        return master.acks.get(command_id)

    ack = await wait_for(done, timeout=30, what=f"the ack of command {command_id}")
    assert ack is not None
    return ack


def cloudflared_services(client: docker.DockerClient) -> list[Any]:
    found: list[Any] = client.services.list(filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})
    return found


async def test_cloudflared_runs_as_a_service_with_the_token_in_a_swarm_secret(
    master: MasterDouble, manager: docker.DockerClient, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent(SWARM)
    ack = await acked(master, master.push(StartTunnel(tunnel_id="tun-s", token=TOKEN)))
    assert ack.ok, ack.error
    assert ack.result["action"] == "created"
    (service,) = cloudflared_services(manager)
    spec = service.attrs["Spec"]
    assert TOKEN not in json.dumps(spec), "the token is neither in the command, the environment nor a label"
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Args"] == ["tunnel", "--no-autoupdate", "run"]
    assert "TUNNEL_TOKEN_FILE=/run/secrets/flareport-tunnel-token" in container["Env"]
    (secret_ref,) = container["Secrets"]
    assert secret_ref["File"]["Name"] == "flareport-tunnel-token"
    node_id = manager.info()["Swarm"]["NodeID"]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={node_id}"], "pinned to the agent's node"
    assert spec["Labels"][TUNNEL_ID_LABEL] == "tun-s"

    async def task_running() -> bool:
        return any(t["Status"]["State"] == "running" for t in service.tasks())

    await wait_for(task_running, what="the cloudflared task running")
    await wait_for(
        lambda: already(any(h.tunnel.container_state == "running" for h in master.heartbeats)),
        what="a heartbeat reporting the service's task running",
    )
    again = await acked(master, master.push(StartTunnel(tunnel_id="tun-s", token=TOKEN)))
    assert again.result["action"] == "unchanged" and again.result["container_id"] == service.id
    rotated = await acked(master, master.push(StartTunnel(tunnel_id="tun-s", token=TOKEN + "x")))
    assert rotated.result["action"] == "replaced"
    secrets = [s.name for s in manager.secrets.list()]
    assert len(secrets) == 1, f"the old token's secret is removed with the service that used it: {secrets}"
    assert [e for e in master.container_events() if isinstance(e, ContainerStart)] == [], (
        "the agent's own cloudflared service is never reported as a user service"
    )

    stopped = await acked(master, master.push(StopTunnel()))
    assert stopped.ok and stopped.result["action"] == "stopped"
    assert cloudflared_services(manager) == []
    assert manager.secrets.list() == [], "stop_tunnel leaves no token behind"


async def test_what_the_container_form_left_behind_is_replaced_or_named_in_the_ack(
    master: MasterDouble, manager: docker.DockerClient, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent(SWARM)
    # The engine ran the agent before it joined a Swarm: a local cloudflare-net and a cloudflared container.
    local = manager.networks.create("cloudflare-net", driver="bridge")
    refused = await acked(master, master.push(StartTunnel(tunnel_id="tun-l", token=TOKEN)))
    assert not refused.ok and refused.error is not None
    assert "overlay" in refused.error and "docker network rm cloudflare-net" in refused.error, refused.error
    assert cloudflared_services(manager) == [], "nothing runs half-configured"
    local.remove()

    legacy = manager.containers.run(
        BUSYBOX_IMAGE,
        detach=True,
        name="flareport-cloudflared-old",
        labels={MANAGED_LABEL: MANAGED_VALUE},
        network_mode="none",
    )
    ack = await acked(master, master.push(StartTunnel(tunnel_id="tun-l", token=TOKEN)))
    assert ack.ok and ack.result["action"] == "replaced", ack
    assert legacy.id not in {c.id for c in manager.containers.list(all=True)}, "one connector per node, not two"
    assert len(cloudflared_services(manager)) == 1


async def test_changes_on_the_manager_show_at_once_not_at_the_next_listing(
    master: MasterDouble, manager: docker.DockerClient, start_agent: Callable[..., RunningAgent]
) -> None:
    # Only the manager's events, and a task still coming up after them, can make it list again before 120 s.
    start_agent(replace(FAST, swarm_poll_seconds=120.0))
    await wait_for(master.inventory_seen, what="the first inventory snapshot")
    service = manager.services.create(
        BUSYBOX_IMAGE,
        name=f"fpt-{uuid.uuid4().hex[:6]}",
        labels={
            "flareport.enable": "true",
            "flareport.hostname": "soon.example.com",
            "dockflare.service": "http://s:1",
        },
        mode=docker.types.ServiceMode("replicated", replicas=1),
    )

    async def reported(expected: list[str]) -> bool:
        return service_reports(master, service.id) == expected

    await wait_for(lambda: reported(["start:soon.example.com"]), timeout=30, what="the new service reported")
    service.reload()
    service.scale(0)
    await wait_for(lambda: reported(["start:soon.example.com", "stop:stop"]), timeout=30, what="the scale to zero")
