"""The socket guard against a real engine: the agent's own Docker calls go through it, every attack of
``bench/socket_proxy.py``'s table (and more) is refused by it, while the very same request sent straight to the
engine is carried out — so each refusal is the guard's doing, not the engine's.

The guard runs in a thread of its own (``fptest.sockguard_harness``), on a unix socket, in front of the session's
Podman. Attacks are sent as raw HTTP (exact bytes); the agent's paths use the real ``docker`` SDK.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import structlog.testing

from flareport_agent.cloudflared import CONFIG_LABEL, MANAGED_LABEL, MANAGED_VALUE, NETWORK
from flareport_agent.sockguard import Policy
from flareport_agent.tunnel import EngineRefused, TunnelManager
from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_common.messages.commands import StartTunnel, StopTunnel
from flareport_common.messages.events import ContainerStart
from flareport_common.protocol import CommandAckRequest
from fptest.agent_harness import Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.sockguard_harness import GuardThread, raw
from fptest.waiting import wait_for, wait_for_sync

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0="
SECRET = "victim-db-password-0123"
OWNER = {MANAGED_LABEL: MANAGED_VALUE}


@pytest.fixture
def engine_socket(docker_host: str) -> Path:
    if not docker_host.startswith("unix://"):
        pytest.skip("the socket guard tests need the engine on a unix socket")
    return Path(docker_host.removeprefix("unix://"))


@pytest.fixture
def guard(engine_socket: Path) -> Iterator[GuardThread]:
    # A short path: a unix socket's path is limited to 107 bytes, pytest's tmp_path can be longer.
    folder = Path(tempfile.mkdtemp(prefix="fpg-"))
    running = GuardThread(Policy(image=BUSYBOX_IMAGE), engine_socket, folder / "docker.sock").start()
    yield running
    running.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def guarded(guard: GuardThread) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=guard.docker_host)
    yield client
    client.close()


@pytest.fixture
def victim(dclient: docker.DockerClient, containers: Containers) -> Any:
    """A running container the agent does not own, with a secret in its environment."""
    return dclient.containers.run(
        BUSYBOX_IMAGE,
        detach=True,
        name=f"fpt-{containers.run_id}-victim",
        environment={"DB_PASSWORD": SECRET},
        labels={"fptest.run": containers.run_id, "com.example.app": "db"},
        network_mode="none",
    )


def remove_network(dclient: docker.DockerClient) -> None:
    for network in dclient.networks.list(names=[NETWORK]):
        if network.name == NETWORK:
            network.remove()


# --- the agent's own paths ----------------------------------------------------------------------------------------


def test_the_tunnel_managers_calls_all_go_through_the_guard(
    guard: GuardThread, guarded: docker.DockerClient, dclient: docker.DockerClient, containers: Containers
) -> None:
    remove_network(dclient)  # so that ensure creates it, through the guard
    manager = TunnelManager(lambda: docker.DockerClient(base_url=guard.docker_host), allowed_image=BUSYBOX_IMAGE)
    try:
        created = manager.ensure("tun-1", TOKEN, BUSYBOX_IMAGE)
        assert created.action == "created"
        assert any(n.name == NETWORK for n in dclient.networks.list(names=[NETWORK]))
        assert manager.ensure("tun-1", TOKEN, BUSYBOX_IMAGE).action == "unchanged"
        dclient.containers.get(created.container_id).stop(timeout=1)
        assert manager.ensure("tun-1", TOKEN, BUSYBOX_IMAGE).action == "started"
        replaced = manager.ensure("tun-1", TOKEN, BUSYBOX_IMAGE, force=True)
        assert replaced.action == "replaced" and replaced.container_id != created.container_id
        state = manager.state("tun-1")
        assert state.container_state == "running" and state.image == BUSYBOX_IMAGE and state.tunnel_id == "tun-1"

        # The engine holds the token in cloudflared's environment; the guard's inspect answer does not show it.
        on_engine = dclient.containers.get(replaced.container_id).attrs
        assert f"TUNNEL_TOKEN={TOKEN}" in on_engine["Config"]["Env"]
        through = guarded.containers.get(replaced.container_id).attrs
        assert through["Config"]["Env"] == [] and TOKEN not in json.dumps(through)
        assert through["Config"]["Labels"][CONFIG_LABEL] == on_engine["Config"]["Labels"][CONFIG_LABEL]

        assert manager.stop().action == "stopped"
        assert dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"}) == []
        assert manager.stop().action == "absent"
    finally:
        manager.close()
    assert guard.guard.refused == 0


def test_a_pull_of_the_configured_image_reaches_the_engine_and_no_other(
    engine_socket: Path, dclient: docker.DockerClient, containers: Containers
) -> None:
    # An image that is not on the engine: the agent pulls it, the engine (no registry here) fails the pull.
    absent = "127.0.0.1:9/flareport-test/cloudflared:1"
    folder = Path(tempfile.mkdtemp(prefix="fpg-"))
    running = GuardThread(Policy(image=absent), engine_socket, folder / "docker.sock").start()
    manager = TunnelManager(lambda: docker.DockerClient(base_url=running.docker_host), allowed_image=absent)
    try:
        with pytest.raises(EngineRefused) as refused:
            manager.ensure("tun-1", TOKEN, absent)
        assert "could not be pulled" in str(refused.value)
        assert running.guard.refused == 0, "the pull was the engine's to fail, not the guard's"
        status, answer = raw(running.socket_path, "POST", "/v1.41/images/create?fromImage=127.0.0.1:9/other&tag=1")
        assert status == 403 and "fromImage" in answer["message"]
    finally:
        manager.close()
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_watchers_stream_and_listing_through_the_guard(
    guard: GuardThread, guarded: docker.DockerClient, containers: Containers
) -> None:
    # The watcher's calls, as it makes them: info (engine time), the events stream, the running containers.
    assert guarded.info().get("SystemTime")
    stream = guarded.events(decode=True, filters={"type": "container"})
    try:
        app = containers.run({"flareport.enable": "true", "flareport.hostname": "a.example.com"})
        listed = guarded.api.containers(filters={"status": "running"})
        assert app.id in [c["Id"] for c in listed]
        for event in stream:
            if event.get("id") == app.id and event.get("Action") == "start":
                assert event["Actor"]["Attributes"]["flareport.hostname"] == "a.example.com"
                break
    finally:
        stream.close()
    assert guard.guard.refused == 0


def test_an_events_stream_the_client_closes_ends_at_once_upstream(
    guard: GuardThread, guarded: docker.DockerClient
) -> None:
    # The watcher drops its stream on every resync; the guard must drop the engine's at once, not at the next event.
    streams = [guarded.events(decode=True, filters={"type": "container"}) for _ in range(3)]
    wait_for_sync(lambda: guard.guard.forwarding == 3, timeout=10, what="three streams forwarded")
    for stream in streams:
        stream.close()
    wait_for_sync(lambda: guard.guard.forwarding == 0, timeout=10, what="the streams closed upstream")


async def test_the_agent_runs_through_the_guard(
    guard: GuardThread,
    master: MasterDouble,
    containers: Containers,
    dclient: docker.DockerClient,
    start_agent: Callable[..., RunningAgent],
) -> None:
    running = start_agent(docker_host=guard.docker_host)
    await wait_for(master.inventory_seen, what="the first inventory snapshot through the guard")
    app = containers.run({"flareport.enable": "true", "flareport.hostname": "app.example.com"})

    async def started() -> bool:
        return any(
            isinstance(e, ContainerStart) and e.container.container_id == app.id for e in master.container_events()
        )

    await wait_for(started, what="the container_start through the guard")

    async def acked(command_id: str) -> CommandAckRequest:
        async def done() -> CommandAckRequest | None:
            return master.acks.get(command_id)

        ack = await wait_for(done, timeout=30, what=f"the ack of {command_id}")
        assert ack is not None
        return ack

    start = await acked(master.push(StartTunnel(tunnel_id="tun-g", token=TOKEN)))
    assert start.ok, start.error
    (cloudflared,) = dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})
    assert cloudflared.status == "running"
    stop = await acked(master.push(StopTunnel()))
    assert stop.ok, stop.error
    assert dclient.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"}) == []
    assert running.agent.docker_connected
    assert guard.guard.refused == 0


# --- attacks: refused by the guard, carried out by the engine --------------------------------------------------------


def cloudflared_body(**changes: Any) -> dict[str, Any]:
    """What the agent sends for cloudflared (the SDK's create body, without the network), changed by ``changes``;
    a ``HostConfig`` change is merged into the agent's own."""
    body: dict[str, Any] = {
        "Image": BUSYBOX_IMAGE,
        "Cmd": ["tunnel", "--no-autoupdate", "run"],
        "Env": ["TUNNEL_TOKEN=x"],
        "Labels": dict(OWNER),
        "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}},
    }
    host_config = changes.pop("HostConfig", {})
    body["HostConfig"].update(host_config)
    body.update(changes)
    return body


ROOT_MOUNT = {"Type": "bind", "Source": "/", "Target": "/host"}
CREATE = "/v1.41/containers/create"


@dataclass(frozen=True)
class Attack:
    what: str
    method: str
    path: str  # {victim}: a running container the agent does not own; {exec}: an exec instance in it
    body: bytes | dict[str, Any] | None
    names: str  # what the guard's message names
    engine: tuple[int, ...] = (201,)
    needs: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()  # HostConfig fields the engine's container shows set (a create's proof)


ATTACKS = [
    Attack("privileged, host / bind-mounted", "POST", CREATE,
           cloudflared_body(HostConfig={"Privileged": True, "Binds": ["/:/host"]}), "HostConfig.Privileged",
           applied=("Privileged", "Binds")),
    Attack("host / as a Mounts entry, host PID namespace", "POST", CREATE,
           cloudflared_body(HostConfig={"Mounts": [ROOT_MOUNT], "PidMode": "host"}), "HostConfig.Mounts",
           applied=("Binds", "PidMode")),
    Attack("CapAdd ALL, host network", "POST", CREATE,
           cloudflared_body(HostConfig={"CapAdd": ["ALL"], "NetworkMode": "host"}), "HostConfig.CapAdd",
           applied=("CapAdd",)),
    Attack("host network only", "POST", CREATE, cloudflared_body(HostConfig={"NetworkMode": "host"}),
           "HostConfig.NetworkMode"),
    Attack("a host device", "POST", CREATE,
           cloudflared_body(HostConfig={"Devices": [
               {"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}]}),
           "HostConfig.Devices", applied=("Devices",)),
    Attack("seccomp and AppArmor off", "POST", CREATE,
           cloudflared_body(HostConfig={"SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined"]}),
           "HostConfig.SecurityOpt", applied=("SecurityOpt",)),
    Attack("host IPC namespace", "POST", CREATE, cloudflared_body(HostConfig={"IpcMode": "host"}),
           "HostConfig.IpcMode", applied=("IpcMode",)),
    Attack("host user namespace", "POST", CREATE, cloudflared_body(HostConfig={"UsernsMode": "host"}),
           "HostConfig.UsernsMode"),
    Attack("a published privileged port", "POST", CREATE,
           cloudflared_body(HostConfig={"PortBindings": {"22/tcp": [{"HostPort": "22"}]}}), "HostConfig.PortBindings"),
    Attack("the victim's volumes", "POST", CREATE, cloudflared_body(HostConfig={"VolumesFrom": ["{victim}"]}),
           "HostConfig.VolumesFrom"),
    Attack("another entrypoint in the cloudflared image", "POST", CREATE,
           cloudflared_body(Entrypoint=["sh", "-c", "cat /etc/hostname"]), "Entrypoint"),
    Attack("another environment", "POST", CREATE, cloudflared_body(Env=["LD_PRELOAD=/tmp/x.so"]), "Env"),
    Attack("another image", "POST", CREATE, cloudflared_body(Image="localhost/flareport-test-sg-other:1"),
           "Image", needs=("other-image",)),
    Attack("without the ownership label", "POST", CREATE, cloudflared_body(Labels={"x": "y"}), "Labels"),
    Attack("privileged in lower-case keys", "POST", CREATE,
           json.dumps({**cloudflared_body(HostConfig={}), "hostconfig": {"privileged": True}}).encode(),
           "appears twice", applied=("Privileged",)),
    Attack("a second HostConfig under another case", "POST", CREATE,
           b'{"Image": "' + BUSYBOX_IMAGE.encode() + b'", "Labels": {"flareport.managed": "cloudflared"}, '
           b'"Cmd": ["tunnel", "--no-autoupdate", "run"], "hostConfig": {"Privileged": true}}',
           "HostConfig.Privileged", applied=("Privileged",)),
    Attack("Privileged given twice, false then true", "POST", CREATE,
           json.dumps(cloudflared_body(HostConfig={"Privileged": False})).replace(
               '"Privileged": false', '"Privileged": false, "Privileged": true').encode(),
           "appears twice", applied=("Privileged",)),
    Attack("Mounts spelled with a long s (U+017F), which Go folds to s", "POST", CREATE,
           json.dumps(cloudflared_body(HostConfig={"Mount\u017f": [ROOT_MOUNT]})).encode(), "not ASCII",
           applied=("Binds",)),
    Attack("exec in another container", "POST", "/v1.41/containers/{victim}/exec", {"Cmd": ["id"]},
           "not an API the agent uses"),
    Attack("start an exec", "POST", "/v1.41/exec/{exec}/start", {"Detach": True}, "not an API the agent uses",
           engine=(200,)),
    Attack("create a volume", "POST", "/v1.41/volumes/create", {"Name": "fpt-sg-volume"},
           "not an API the agent uses"),
    Attack("read a file out of another container", "GET", "/v1.41/containers/{victim}/archive?path=/etc",
           None, "not an API the agent uses", engine=(200,)),
    Attack("another container's logs", "GET", "/v1.41/containers/{victim}/logs?stdout=1", None,
           "not an API the agent uses", engine=(200,)),
    Attack("stop another container", "POST", "/v1.41/containers/{victim}/stop?t=1", None, "ownership label",
           engine=(204,)),
    Attack("remove another container", "DELETE", "/v1.41/containers/{victim}?force=1", None, "ownership label",
           engine=(204,)),
    Attack("another network", "POST", "/v1.41/networks/create", {"Name": "fpt-sg-net", "Driver": "bridge"},
           "Name"),
    Attack("the cloudflared network with an address range", "POST", "/v1.41/networks/create",
           {"Name": NETWORK, "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.213.0.0/24"}]}}, "IPAM"),
    Attack("pull another image", "POST", "/v1.41/images/create?fromImage=127.0.0.1:9/attacker/miner&tag=1", None,
           "fromImage", engine=(200, 500)),
    Attack("Podman's own API", "POST", "/v4.0.0/libpod/containers/create",
           {"image": BUSYBOX_IMAGE, "privileged": True, "labels": OWNER}, "not an API the agent uses"),
]  # fmt: skip


@dataclass
class Engine:
    """What exists on the engine: compared before and after a request the guard refused."""

    containers: dict[str, tuple[str, str]]
    volumes: set[str]
    networks: set[str]
    images: set[str]

    @classmethod
    def of(cls, client: docker.DockerClient) -> Engine:
        return cls(
            {c.id: (c.status, c.name) for c in client.containers.list(all=True)},
            {v.name for v in client.volumes.list()},
            {n.name for n in client.networks.list()},
            {tag for image in client.images.list() for tag in image.tags},
        )


@pytest.fixture
def other_image(dclient: docker.DockerClient) -> Iterator[None]:
    dclient.images.get(BUSYBOX_IMAGE).tag("localhost/flareport-test-sg-other", "1")
    yield
    dclient.images.remove("localhost/flareport-test-sg-other:1", force=True)


def undo(client: docker.DockerClient, before: Engine) -> None:
    """Remove what a request straight to the engine made."""
    after = Engine.of(client)
    for container_id in set(after.containers) - set(before.containers):
        client.containers.get(container_id).remove(force=True)
    for volume in after.volumes - before.volumes:
        client.volumes.get(volume).remove(force=True)
    for network in after.networks - before.networks:
        for found in client.networks.list(names=[network]):
            if found.name == network:
                found.remove()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.what for a in ATTACKS])
def test_the_guard_refuses_what_the_engine_would_do(
    attack: Attack,
    guard: GuardThread,
    engine_socket: Path,
    dclient: docker.DockerClient,
    victim: Any,
    request: pytest.FixtureRequest,
) -> None:
    for need in attack.needs:
        request.getfixturevalue(need.replace("-", "_"))
    remove_network(dclient)
    exec_id = dclient.api.exec_create(victim.id, ["true"])["Id"] if "{exec}" in attack.path else ""
    path = attack.path.format(victim=victim.id, exec=exec_id)
    body = attack.body
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace("{victim}", victim.id))

    before = Engine.of(dclient)
    status, answer = raw(guard.socket_path, attack.method, path, body)
    assert status == 403, answer
    assert attack.names in answer["message"], answer
    assert Engine.of(dclient) == before, "a refused request changed nothing on the engine"
    assert guard.guard.refused == 1

    # The same bytes straight to the engine: carried out.
    try:
        status, answer = raw(engine_socket, attack.method, path, body)
        assert status in attack.engine, answer
        if attack.method == "POST" and path == CREATE:
            made = dclient.api.inspect_container(answer["Id"])["HostConfig"]
            for key in attack.applied:
                assert made[key] and made[key] != "private", f"the engine did not apply {key}: {made[key]!r}"
    finally:
        undo(dclient, before)


def test_the_guards_refusals_are_logged_without_the_body(guard: GuardThread) -> None:
    with structlog.testing.capture_logs() as logs:
        status, _ = raw(guard.socket_path, "POST", CREATE, cloudflared_body(Env=[f"TUNNEL_TOKEN={TOKEN}", "X=1"]))
    assert status == 403
    (line,) = [entry for entry in logs if entry["event"] == "sockguard.refused"]
    assert line["path"] == CREATE and "Env" in line["reason"]
    assert TOKEN not in json.dumps(logs, default=str)


def test_inspect_through_the_guard_hides_other_containers_environment_and_command(
    guarded: docker.DockerClient, dclient: docker.DockerClient, victim: Any
) -> None:
    on_engine = dclient.api.inspect_container(victim.id)
    assert f"DB_PASSWORD={SECRET}" in on_engine["Config"]["Env"]
    through = guarded.api.inspect_container(victim.id)
    assert SECRET not in json.dumps(through)
    assert through["Config"]["Env"] == [] and through["Args"] == [] and through["Config"]["Entrypoint"] == []
    assert through["Config"]["Labels"] == on_engine["Config"]["Labels"]
    assert through["State"] == on_engine["State"]


def test_an_old_api_version_is_refused(guard: GuardThread, engine_socket: Path) -> None:
    # API versions before 1.24 took a HostConfig in the body of a start: the guard accepts none of them.
    status, answer = raw(guard.socket_path, "GET", "/v1.23/containers/json")
    assert status == 403 and "1.23" in answer["message"]
    assert raw(engine_socket, "GET", "/v1.23/containers/json")[0] == 200


def test_a_missing_container_is_the_engines_404(guarded: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.NotFound):
        guarded.api.stop("fpt-no-such-container")


def test_the_command_serves_on_a_unix_socket_and_stops_on_sigterm(engine_socket: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fpg-"))
    listen = folder / "docker.sock"
    command = [sys.executable, "-m", "flareport_cli.main", "socket-guard", "--listen", f"unix:{listen}"]
    command += ["--upstream", f"unix://{engine_socket}", "--image", BUSYBOX_IMAGE]
    process = subprocess.Popen(
        command, env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:  # its first log line says it is listening (no polling)
            lines.append(line)
            if "sockguard.listening" in line:
                break
        assert any("sockguard.listening" in line for line in lines), lines
        assert stat.S_IMODE(listen.stat().st_mode) == 0o660
        assert raw(listen, "GET", "/_ping") == (200, "OK")
        status, answer = raw(listen, "POST", CREATE, cloudflared_body(HostConfig={"Privileged": True}))
        assert status == 403 and "HostConfig.Privileged" in answer["message"]
        refusal = json.loads(process.stderr.readline())
        assert refusal["event"] == "sockguard.refused" and refusal["path"] == CREATE
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_bad_setting_stops_the_command_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flareport_cli.main", "socket-guard", "--listen", "port 2375"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "flareport socket-guard: invalid configuration: --listen: expected unix:/path or tcp:host:port, got 'port 2375'"
    )
