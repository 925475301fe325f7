"""A real Docker Engine (``dockerd``) for tests: its own data root, exec root and unix socket, nothing shared.

Most users run Docker Engine, not Podman, and the two differ where the agent listens (the event stream, stop
reports, label filters), so the agent's engine-facing tests run on both. Debian's ``docker.io`` runs here as root
without systemd when it is kept away from the host's networking: ``--iptables=false --ip6tables=false
--bridge=none`` (no default bridge; user-defined bridge networks, ``none`` and ``host`` still work) and the ``vfs``
storage driver (no overlay mounts inside a container). Everything lives under one short temporary folder: unix
socket paths are limited to 108 bytes, and containerd puts its sockets under the exec root.

No registry is reachable, so the busybox stand-in image is imported from the same root file system the Podman
harness builds (``write_busybox_rootfs``). ``swarm_init`` turns the engine into a single-node Swarm manager.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.models.containers

from flareport_cli.localpodman import BUSYBOX_IMAGE, IMAGE_CHANGES, write_busybox_rootfs
from flareport_cli.localredis import end_process

_BUILT_IN_NETWORKS = ("bridge", "host", "none", "ingress", "docker_gwbridge")


class DockerdError(RuntimeError):
    pass


# Second octet of each Swarm's overlay address pool (10.N.0.0/16), starting anywhere so that test processes
# running side by side are unlikely to pick the same ones.
_POOLS = itertools.count(random.randrange(186))


def free_udp_port() -> int:
    """A UDP port free now in the range Swarm accepts for its data path (1024-49151, not the kernel's ephemeral
    range above it)."""
    while True:
        port = random.randrange(20000, 49151)  # spreads instances apart; nothing secret
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))  # VXLAN listens on every address
            except OSError:
                continue
            return port


def dockerd_available() -> bool:
    return shutil.which("dockerd") is not None and shutil.which("containerd") is not None


class LocalDockerd:
    """``dockerd`` on ``<folder>/docker.sock``; ``docker_host`` is the value for DOCKER_HOST."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fpd-", dir="/tmp"))
        self._process: subprocess.Popen[bytes] | None = None
        self.swarm = False

    @property
    def docker_host(self) -> str:
        return f"unix://{self.folder / 'docker.sock'}"

    @property
    def log_path(self) -> Path:
        return self.folder / "dockerd.log"

    @contextmanager
    def client(self) -> Iterator[docker.DockerClient]:
        client = docker.DockerClient(base_url=self.docker_host, timeout=60)
        try:
            yield client
        finally:
            client.close()

    def start(self, *, timeout: float = 60.0) -> None:
        if not dockerd_available():
            raise DockerdError("dockerd and containerd not found; `make deps` installs docker.io")
        f = self.folder
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={f / 'root'}",
                    f"--exec-root={f / 'exec'}",
                    f"--host={self.docker_host}",
                    f"--pidfile={f / 'docker.pid'}",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--bridge=none",
                    "--storage-driver=vfs",
                    # Stopping the engine stops its containers; the stand-in image exits on SIGTERM at once.
                    "--shutdown-timeout=2",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise DockerdError(f"dockerd did not answer /_ping; the end of its log:\n{tail}")

    def ping(self) -> bool:
        if not (self.folder / "docker.sock").exists():
            return False
        try:
            with self.client() as client:
                return bool(client.ping())
        except Exception:  # not listening yet: keep waiting until the deadline
            return False

    def load_busybox_image(self, name: str = BUSYBOX_IMAGE) -> str:
        """Import the busybox stand-in (see ``flareport_cli.localpodman``) under ``name``."""
        repository, _, tag = name.rpartition(":")
        archive = self.folder / "busybox-rootfs.tar"
        write_busybox_rootfs(archive)
        with self.client() as client:
            client.api.import_image(src=str(archive), repository=repository, tag=tag, changes=list(IMAGE_CHANGES))
        archive.unlink()
        return name

    def swarm_init(self) -> None:
        """Make this engine a single-node Swarm manager (services run, overlay networks can be created).

        Several Swarms on one machine share its network namespace: each needs its own VXLAN port and overlay
        subnets, or the second one's tasks on an overlay network fail ("error creating vxlan interface: file
        exists"). The control port is any free one on loopback."""
        pool = 64 + next(_POOLS) % 186  # distinct within this process, apart from other processes by chance
        with self.client() as client:
            client.swarm.init(
                advertise_addr="127.0.0.1",
                listen_addr="127.0.0.1:0",
                default_addr_pool=[f"10.{pool}.0.0/16"],
                subnet_size=24,
                data_path_port=free_udp_port(),
            )
        self.swarm = True

    def remove_all(self) -> None:
        """Remove every service, container, secret and user network (cleanup, also after a failed test). Each
        removal may race with the engine's own (a removed service's tasks, a network a task still holds): such
        failures are left to the engine, which finishes them, or to ``close``, which discards everything."""
        with self.client() as client:
            doomed: list[Any] = []
            if self.swarm:
                doomed += client.services.list()
            doomed += client.containers.list(all=True)
            if self.swarm:
                doomed += client.secrets.list()
            doomed += [n for n in client.networks.list() if n.name not in _BUILT_IN_NETWORKS]
            for item in doomed:
                with contextlib.suppress(docker.errors.APIError):
                    if isinstance(item, docker.models.containers.Container):
                        item.remove(force=True)
                    else:
                        item.remove()

    def close(self) -> None:
        """``remove_all`` then ``stop``; the engine stops even when the cleanup fails."""
        try:
            if self._process is not None and self._process.poll() is None:  # started, and still running
                self.remove_all()
        finally:
            self.stop()

    def stop(self) -> None:
        # No ``swarm leave`` first: the Swarm's state goes with the data root, and leaving costs seconds.
        process, self._process = self._process, None
        end_process(process, timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)
