"""The agent's own defences, against a real engine: it runs only its configured cloudflared image (whatever a
command or the state file says), keeps its data directory 0700 and its files 0600, and warns when the master is
reached in clear text over the network."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import structlog.testing
from prometheus_client import REGISTRY

from flareport_agent.cloudflared import MANAGED_LABEL, TUNNEL_ID_LABEL
from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_common.messages.commands import RestartTunnel, StartTunnel
from flareport_common.protocol import CommandAckRequest
from flareport_common.settings import AgentSettings
from fptest.agent_harness import Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.waiting import already, wait_for

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0="
# A real image on the engine, so nothing but the agent's own check stands between a command and running it.
OTHER_IMAGE = "localhost/flareport-test-other:1"


@pytest.fixture
def other_image(dclient: docker.DockerClient) -> Iterator[str]:
    repository, tag = OTHER_IMAGE.rsplit(":", 1)
    dclient.images.get(BUSYBOX_IMAGE).tag(repository, tag)
    yield OTHER_IMAGE
    for container in dclient.containers.list(all=True):
        if container.attrs["Config"]["Image"] == OTHER_IMAGE:
            container.remove(force=True)
    dclient.images.remove(OTHER_IMAGE)


def cloudflared(dclient: docker.DockerClient) -> list[Any]:
    found: list[Any] = dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=cloudflared"})
    return found


def settled(dclient: docker.DockerClient) -> list[Any]:
    """``cloudflared`` while the agent may be replacing it: a container listed and removed before the SDK inspects
    it (Podman answers 500 "no such container") is a moment of the replacement, not a failure."""
    try:
        return cloudflared(dclient)
    except docker.errors.APIError:
        return []


def with_image(dclient: docker.DockerClient, image: str) -> list[Any]:
    return [c for c in dclient.containers.list(all=True) if c.attrs["Config"]["Image"] == image]


async def acked(master: MasterDouble, command_id: str) -> CommandAckRequest:
    async def done() -> CommandAckRequest | None:
        return master.acks.get(command_id)

    ack = await wait_for(done, timeout=20, what=f"the ack of command {command_id}")
    assert ack is not None
    return ack


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_a_command_naming_another_image_is_refused_and_nothing_runs_it(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
    other_image: str,
) -> None:
    running = start_agent()
    refused = await acked(master, master.push(StartTunnel(tunnel_id="tun-evil", token=TOKEN, image=other_image)))
    assert not refused.ok
    assert refused.error is not None
    assert other_image in refused.error and BUSYBOX_IMAGE in refused.error, refused.error
    assert "CLOUDFLARED_IMAGE" in refused.error
    assert with_image(dclient, other_image) == [] and cloudflared(dclient) == []
    assert running.agent.state.tunnel_id is None, "a refused command changes nothing, not even the saved tunnel"

    # The configured image, in another spelling (no tag = latest), is the same image: accepted.
    started = await acked(
        master, master.push(StartTunnel(tunnel_id="tun-1", token=TOKEN, image=BUSYBOX_IMAGE.removesuffix(":latest")))
    )
    assert started.ok, started.error
    (container,) = cloudflared(dclient)
    assert container.attrs["Config"]["Image"] == BUSYBOX_IMAGE

    # restart_tunnel may not swap the image either: refused, the running container left alone.
    restart = await acked(master, master.push(RestartTunnel(image=other_image)))
    assert not restart.ok and restart.error is not None and other_image in restart.error
    (still,) = cloudflared(dclient)
    assert still.id == container.id and still.attrs["Config"]["Image"] == BUSYBOX_IMAGE
    assert with_image(dclient, other_image) == []
    assert not running.task.done()


async def test_saved_state_naming_another_image_brings_back_only_the_configured_one(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
    agent_settings: AgentSettings,
    other_image: str,
) -> None:
    # A state file edited (or left by an older release that obeyed a command's image) to name another image.
    data = Path(agent_settings.data_dir)
    os.mkdir(data, 0o700)
    state = {"tunnel_id": "tun-disk", "tunnel_token": TOKEN, "tunnel_image": other_image, "tunnel_wanted": True}
    (data / "state.json").write_text(json.dumps(state))
    await master.stop()  # restored from disk alone, the master away
    with structlog.testing.capture_logs() as logs:
        running = start_agent()

        async def back() -> list[Any]:
            found = settled(dclient)
            return found if len(found) == 1 and found[0].status == "running" else []

        (container,) = await wait_for(back, timeout=30, what="cloudflared restored from the saved state")
    assert container.attrs["Config"]["Image"] == BUSYBOX_IMAGE
    assert container.labels[TUNNEL_ID_LABEL] == "tun-disk"
    assert with_image(dclient, other_image) == []
    warned = [e for e in logs if e.get("saved_image") == other_image]
    assert warned and warned[0]["log_level"] == "warning" and warned[0]["image"] == BUSYBOX_IMAGE
    await running.stop()
    assert json.loads((data / "state.json").read_text())["tunnel_image"] == BUSYBOX_IMAGE


async def test_an_operator_changes_the_image_with_cloudflared_image_and_a_restart(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
    other_image: str,
) -> None:
    first = start_agent()
    started = await acked(master, master.push(StartTunnel(tunnel_id="tun-2", token=TOKEN)))
    assert started.ok, started.error
    assert await first.stop() == 0
    start_agent(cloudflared_image=other_image)

    async def replaced() -> list[Any]:
        found = settled(dclient)
        ok = len(found) == 1 and found[0].attrs["Config"]["Image"] == other_image and found[0].status == "running"
        return found if ok else []

    (container,) = await wait_for(replaced, timeout=30, what="cloudflared replaced with the new configured image")
    assert container.id != started.result["container_id"]
    assert f"TUNNEL_TOKEN={TOKEN}" in container.attrs["Config"]["Env"]


async def test_a_new_data_dir_is_0700_and_the_state_file_0600(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    old = os.umask(0o022)  # the usual umask, whatever the test runner's
    try:
        running = start_agent()
        data = Path(running.agent.settings.data_dir)
        started = await acked(master, master.push(StartTunnel(tunnel_id="tun-m", token=TOKEN)))
        assert started.ok, started.error
    finally:
        os.umask(old)
    assert mode(data) == 0o700
    assert os.listdir(data) == ["state.json"]
    assert mode(data / "state.json") == 0o600
    assert json.loads((data / "state.json").read_text())["tunnel_token"] == TOKEN


async def test_an_open_data_dir_of_ours_is_tightened_with_a_warning(
    master: MasterDouble,
    containers: Containers,
    start_agent: Callable[..., RunningAgent],
    agent_settings: AgentSettings,
) -> None:
    data = Path(agent_settings.data_dir)
    os.mkdir(data)
    os.chmod(data, 0o755)  # noqa: S103 - the too-open directory under test
    (data / "state.json").write_text(json.dumps({"agent_id": "agent-1"}))
    os.chmod(data / "state.json", 0o644)
    with structlog.testing.capture_logs() as logs:
        running = start_agent()
        await wait_for(lambda: already(len(master.registrations) > 0), what="registration")
    assert mode(data) == 0o700
    assert mode(data / "state.json") == 0o600
    tightened = {e["path"]: e for e in logs if e["event"] == "state.restricted"}
    assert set(tightened) == {str(data), str(data / "state.json")}
    assert tightened[str(data)]["mode"] == "0o755" and tightened[str(data)]["log_level"] == "warning"
    await running.stop()
    assert mode(data / "state.json") == 0o600


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        # Addresses only (no name to resolve on a machine without DNS); names are in the unit tests.
        ("http://192.0.2.10:8080", True),
        ("http://[2001:db8::1]:8080", True),
        ("https://192.0.2.10:8443", False),
        ("http://127.0.0.2:9", False),
        ("http://[::1]:9", False),
    ],
)
async def test_a_master_in_clear_text_over_the_network_is_warned_about_at_start(
    master: MasterDouble, start_agent: Callable[..., RunningAgent], url: str, warned: bool
) -> None:
    with structlog.testing.capture_logs() as logs:
        running = start_agent(master_url=url)

        async def started() -> bool:
            return running.agent.health_port is not None

        await wait_for(started, what="the agent started")
        await running.stop()
    cleartext = [e for e in logs if e["event"] == "master.cleartext_url"]
    if warned:
        assert len(cleartext) == 1 and cleartext[0]["log_level"] == "warning", logs
        assert "agent key" in cleartext[0]["hint"] and "tunnel token" in cleartext[0]["hint"]
    else:
        assert cleartext == []
    metric = _metric("flareport_agent_master_url_cleartext")
    assert metric == (1.0 if warned else 0.0)


async def test_the_loopback_master_of_the_harness_gets_no_warning(
    master: MasterDouble, start_agent: Callable[..., RunningAgent]
) -> None:
    with structlog.testing.capture_logs() as logs:
        start_agent()
        await wait_for(lambda: already(len(master.registrations) > 0), what="registration")
    assert master.url.startswith("http://127.0.0.1:")
    assert not [e for e in logs if e["event"] == "master.cleartext_url"]


def _metric(name: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(name)
    return value
