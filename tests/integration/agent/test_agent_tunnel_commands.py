"""Commands against a real engine: the cloudflared container (busybox stand-in), key rotation, decommission."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from flareport_agent.cloudflared import MANAGED_LABEL, NETWORK, TUNNEL_ID_LABEL
from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_common.messages.commands import Decommission, RestartTunnel, RotateKey, StartTunnel, StopTunnel
from flareport_common.messages.events import TunnelStatus
from flareport_common.protocol import CommandAckRequest
from fptest.agent_harness import Containers, RunningAgent, both_engines
from fptest.agent_master_double import MasterDouble
from fptest.waiting import already, wait_for

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0="


def cloudflared(dclient: docker.DockerClient) -> list[Any]:
    found: list[Any] = dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=cloudflared"})
    return found


async def acked(master: MasterDouble, command_id: str) -> CommandAckRequest:
    async def done() -> CommandAckRequest | None:
        return master.acks.get(command_id)

    ack = await wait_for(done, timeout=20, what=f"the ack of command {command_id}")
    assert ack is not None
    return ack


@both_engines
async def test_start_tunnel_runs_cloudflared_with_the_token_only_in_its_environment(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
    agent_settings: object,
) -> None:
    running = start_agent()
    ack = await acked(master, master.push(StartTunnel(tunnel_id="tun-1", token=TOKEN)))
    assert ack.ok, ack.error
    assert ack.result["action"] == "created"
    (container,) = cloudflared(dclient)
    attrs = container.attrs
    assert container.status == "running"
    assert f"TUNNEL_TOKEN={TOKEN}" in attrs["Config"]["Env"]
    assert TOKEN not in json.dumps([attrs["Config"]["Cmd"], attrs["Config"]["Entrypoint"], attrs.get("Args")])
    assert attrs["Config"]["Cmd"] == ["tunnel", "--no-autoupdate", "run"]
    assert NETWORK in attrs["NetworkSettings"]["Networks"]
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.labels[TUNNEL_ID_LABEL] == "tun-1"
    assert all(TOKEN not in value for value in container.labels.values()), "the token must not be in a label"

    again = await acked(master, master.push(StartTunnel(tunnel_id="tun-1", token=TOKEN)))
    assert again.result["action"] == "unchanged" and again.result["container_id"] == container.id

    async def status_reported() -> bool:
        return any(isinstance(e, TunnelStatus) and e.tunnel.container_state == "running" for e in master.events)

    await wait_for(status_reported, what="a tunnel_status event with the running container")
    await wait_for(
        lambda: already(any(h.tunnel.tunnel_id == "tun-1" for h in master.heartbeats)),
        what="a heartbeat carrying the tunnel",
    )

    state_file = Path(running.agent.settings.data_dir) / "state.json"
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    assert json.loads(state_file.read_text())["tunnel_token"] == TOKEN

    stopped = await acked(master, master.push(StopTunnel()))
    assert stopped.ok and stopped.result["action"] == "stopped"
    assert cloudflared(dclient) == []


async def test_an_image_the_engine_cannot_pull_is_reported_in_the_ack_and_the_agent_goes_on(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
) -> None:
    absent = "localhost/flareport-test-absent:1"
    running = start_agent(cloudflared_image=absent)
    failed = await acked(master, master.push(StartTunnel(tunnel_id="tun-x", token=TOKEN)))
    assert not failed.ok
    assert failed.error is not None and f"the cloudflared image {absent} is not on this host" in failed.error
    assert "CLOUDFLARED_IMAGE" in failed.error, "the ack says what to do about it"
    assert cloudflared(dclient) == []
    assert not running.task.done()


@both_engines
async def test_restart_tunnel_replaces_the_container_with_the_configured_image(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
) -> None:
    start_agent()
    first = await acked(master, master.push(StartTunnel(tunnel_id="tun-2", token=TOKEN)))
    restarted = await acked(master, master.push(RestartTunnel(image=BUSYBOX_IMAGE)))
    assert restarted.ok, restarted.error
    assert restarted.result["action"] == "replaced"
    (container,) = cloudflared(dclient)
    assert container.id != first.result["container_id"]
    assert container.attrs["Config"]["Image"] == BUSYBOX_IMAGE
    assert f"TUNNEL_TOKEN={TOKEN}" in container.attrs["Config"]["Env"], "the token comes from the last start_tunnel"
    # Another image is the operator's choice on the host (CLOUDFLARED_IMAGE), never a command's:
    # test_agent_hardening.py.


@both_engines
async def test_restart_without_master_brings_cloudflared_back_from_disk(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
) -> None:
    first = start_agent()
    await acked(master, master.push(StartTunnel(tunnel_id="tun-3", token=TOKEN)))
    assert await first.stop() == 0
    # The host lost the container (e.g. pruned) and the master is away when the agent comes back.
    for container in cloudflared(dclient):
        container.remove(force=True)
    await master.stop()
    second = start_agent()

    async def back() -> bool:
        found = cloudflared(dclient)
        return len(found) == 1 and found[0].status == "running"

    await wait_for(back, timeout=20, what="cloudflared recreated from the saved token while the master is down")
    (container,) = cloudflared(dclient)
    assert f"TUNNEL_TOKEN={TOKEN}" in container.attrs["Config"]["Env"]
    assert container.labels[TUNNEL_ID_LABEL] == "tun-3"
    registrations = len(master.registrations)
    await master.start()  # same port: the agent registers when it comes back and sends its inventory
    await wait_for(lambda: already(len(master.registrations) > registrations), what="registration after the outage")
    await second.stop()


async def test_unknown_command_is_acked_with_an_error_and_rotate_key_switches_keys(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    running = start_agent()
    unknown = await acked(master, master.push_raw({"type": "reticulate_splines", "id": "x"}))
    assert not unknown.ok and "reticulate_splines" in (unknown.error or "")

    master.keys.add("rotated-key-abcdefghijkl")
    rotate_id = master.push(RotateKey(key_id="k2", new_key="rotated-key-abcdefghijkl"))
    assert (await acked(master, rotate_id)).ok
    assert master.ack_keys[rotate_id] == "agent-key-0123456789", "the rotation is acked with the old key"
    master.keys.discard("agent-key-0123456789")
    beats = len(master.heartbeats)
    await wait_for(lambda: already(len(master.heartbeats) > beats + 1), what="heartbeats with the rotated key")
    saved = json.loads((Path(running.agent.settings.data_dir) / "state.json").read_text())
    assert saved["rotated_key"] == "rotated-key-abcdefghijkl"


@both_engines
async def test_decommission_removes_cloudflared_and_stops_the_agent(
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
) -> None:
    running = start_agent()
    await acked(master, master.push(StartTunnel(tunnel_id="tun-4", token=TOKEN)))
    ack = await acked(master, master.push(Decommission()))
    assert ack.ok and ack.result["tunnel"]["action"] == "stopped"
    assert await asyncio.wait_for(running.task, 20) == 0, "the agent stops itself after decommission"
    assert cloudflared(dclient) == []


async def test_revoked_key_stops_calls_until_the_master_accepts_it_again(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent()
    await wait_for(lambda: already(len(master.heartbeats) > 0), what="a first heartbeat")
    master.mode = "unauthorized"

    def register_attempts() -> int:
        return sum(1 for path in master.refused_paths if path.endswith("/register"))

    await wait_for(lambda: already(register_attempts() >= 2), what="slow re-register attempts with the revoked key")
    others = [path for path in master.refused_paths if not path.endswith("/register")]
    # At most the calls already on their way when the key was revoked: one per loop (events, commands, heartbeat).
    assert len(others) <= 3, f"calls other than re-register continued after the key was rejected: {others}"
    registrations = len(master.registrations)
    # Counted before the key works again: the inventory may follow the re-registration before we look.
    inventories = sum(1 for e in master.events if type(e).__name__ == "Inventory")
    master.mode = "ok"
    await wait_for(
        lambda: already(len(master.registrations) > registrations), what="a slow re-register once the key works"
    )
    await wait_for(
        lambda: already(sum(1 for e in master.events if type(e).__name__ == "Inventory") > inventories),
        what="the inventory resent after re-registering",
    )


async def test_master_that_lost_the_agent_gets_a_new_registration_and_inventory(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent()
    await wait_for(lambda: already(len(master.heartbeats) > 0), what="a first heartbeat")
    registrations = len(master.registrations)
    inventories = sum(1 for e in master.events if type(e).__name__ == "Inventory")
    master.reregister_once = True
    await wait_for(lambda: already(len(master.registrations) > registrations), what="registration when told to")
    await wait_for(
        lambda: already(sum(1 for e in master.events if type(e).__name__ == "Inventory") > inventories),
        what="the inventory resent after the master asked to re-register",
    )
