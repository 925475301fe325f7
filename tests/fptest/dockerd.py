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
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from flareport_cli.localpodman import BUSYBOX_IMAGE, IMAGE_CHANGES, write_busybox_rootfs
from flareport_cli.localredis import end_process


class DockerdError(RuntimeError):
    pass


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
        """Make this engine a single-node Swarm manager (services run, overlay networks can be created)."""
        with self.client() as client:
            client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:0")
        self.swarm = True

    def remove_all(self) -> None:
        """Remove every service, container, secret and user network (cleanup, also after a failed test)."""
        with self.client() as client:
            if self.swarm:
                for service in client.services.list():
                    service.remove()
                for secret in client.secrets.list():
                    secret.remove()
            for container in client.containers.list(all=True):
                # A removed service's task containers may be on their way out already.
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True)
            for network in client.networks.list():
                if network.name not in ("bridge", "host", "none", "ingress", "docker_gwbridge"):
                    # A Swarm network may still be held by a task on its way out: the engine drops it later.
                    with contextlib.suppress(docker.errors.APIError):
                        network.remove()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None and self.swarm:
            with contextlib.suppress(docker.errors.APIError), self.client() as client:
                client.swarm.leave(force=True)
        process, self._process = self._process, None
        end_process(process, timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)
