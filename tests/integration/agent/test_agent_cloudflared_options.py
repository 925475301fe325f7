"""``CLOUDFLARED_NETWORK_NAME`` and ``CLOUDFLARED_METRICS_PORT`` on a real Podman engine: cloudflared (the busybox
stand-in) joins the configured network, carries ``--metrics 0.0.0.0:<port>`` and publishes nothing on the host; a
changed setting replaces it when the agent starts again; a socket guard given the same settings lets it through."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from flareport_agent.cloudflared import MANAGED_LABEL, command
from flareport_agent.sockguard import Policy
from flareport_agent.tunnel import TunnelManager
from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_common.messages.commands import StartTunnel
from fptest.agent_harness import Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.sockguard_harness import GuardThread
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


def test_a_socket_guard_given_the_same_settings_lets_that_cloudflared_through_and_only_it(
    docker_host: str, dclient: docker.DockerClient, containers: Containers, network: str
) -> None:
    if not docker_host.startswith("unix://"):
        pytest.skip("the socket guard needs the engine on a unix socket")
    folder = Path(tempfile.mkdtemp(prefix="fpg-"))  # short: a unix socket's path is limited to 107 bytes
    policy = Policy(image=BUSYBOX_IMAGE, network=network, command=command(2000))
    guard = GuardThread(policy, Path(docker_host.removeprefix("unix://")), folder / "docker.sock").start()

    def through(metrics_port: int | None) -> TunnelManager:
        return TunnelManager(
            lambda: docker.DockerClient(base_url=guard.docker_host),
            allowed_image=BUSYBOX_IMAGE,
            network=network,
            metrics_port=metrics_port,
        )

    try:
        manager = through(2000)
        try:
            assert manager.ensure("tun-1", TOKEN, BUSYBOX_IMAGE).action == "created"
        finally:
            manager.close()
        assert guard.guard.refused == 0, "the network and the container with --metrics went through"
        other = through(2375)
        try:
            with pytest.raises(docker.errors.APIError, match="Cmd"):
                other.ensure("tun-1", TOKEN, BUSYBOX_IMAGE)
        finally:
            other.close()
    finally:
        guard.stop()
        shutil.rmtree(folder, ignore_errors=True)
