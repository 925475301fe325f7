"""``CLOUDFLARED_NETWORK_NAME`` and ``CLOUDFLARED_METRICS_PORT`` on a real Podman engine: cloudflared (the busybox
stand-in) joins the configured network, carries ``--metrics 0.0.0.0:<port>`` and publishes nothing on the host; a
changed setting replaces it when the agent starts again."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from flareport_agent.cloudflared import MANAGED_LABEL
from flareport_common.messages.commands import StartTunnel
from fptest.agent_harness import Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0="


@pytest.fixture
def network(dclient: docker.DockerClient) -> Iterator[str]:
    name = f"fpt-edge-{uuid.uuid4().hex[:6]}"
    yield name
    for found in dclient.networks.list(names=[name]):
        if found.name == name:
            for container in dclient.containers.list(all=True, filters={"network": name}):
                container.remove(force=True)
            found.remove()


def cloudflared(dclient: docker.DockerClient) -> list[Any]:
    found: list[Any] = dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=cloudflared"})
    return found


async def test_cloudflared_joins_the_configured_network_with_its_metrics_port_unpublished(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
    network: str,
    tmp_path: Path,
) -> None:
    data = str(tmp_path / "data")
    first = start_agent(data_dir=data, cloudflared_network=network, cloudflared_metrics_port=2000)
    command_id = master.push(StartTunnel(tunnel_id="tun-1", token=TOKEN))
    await wait_for(lambda: _async(command_id in master.acks), what="the ack of start_tunnel")
    assert master.acks[command_id].ok, master.acks[command_id].error
    (container,) = cloudflared(dclient)
    attrs = container.attrs
    assert attrs["Config"]["Cmd"] == ["tunnel", "--no-autoupdate", "--metrics", "0.0.0.0:2000", "run"]
    assert list(attrs["NetworkSettings"]["Networks"]) == [network]
    assert not attrs["HostConfig"].get("PortBindings"), "the metrics port is not published on the host"
    assert [e for e in attrs["Config"]["Env"] if e.startswith("TUNNEL_")] == [f"TUNNEL_TOKEN={TOKEN}"]
    await first.stop()

    # A new metrics port: the agent brings cloudflared back from its saved tunnel, replaced with the new command.
    start_agent(data_dir=data, cloudflared_network=network, cloudflared_metrics_port=2001)

    async def replaced() -> list[Any]:
        try:
            found = cloudflared(dclient)
        except docker.errors.APIError:  # listed, then removed by the agent before it was inspected
            return []
        return [c for c in found if c.id != container.id and "0.0.0.0:2001" in c.attrs["Config"]["Cmd"]]

    (new,) = await wait_for(replaced, what="cloudflared replaced with --metrics 0.0.0.0:2001")
    assert [c.id for c in cloudflared(dclient)] == [new.id], "the old container is gone"
    assert list(new.attrs["NetworkSettings"]["Networks"]) == [network]


async def _async(value: bool) -> bool:
    return value
