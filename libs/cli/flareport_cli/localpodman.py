"""A local Podman API service on a unix socket: a real Docker-compatible engine for tests, benchmarks and ``make run``.

Machines like CI's have no Docker engine, but ``podman system service`` speaks the Docker API well enough for the
``docker`` SDK. The machines also refuse crun, systemd cgroups and raising rlimits, so the service runs with its own
``containers.conf`` (runc, cgroupfs, file events logger, modest ulimits) written into the work directory.

No registry is reachable either, so ``build_busybox_image`` imports a tiny image made from the host's static busybox.
Its entrypoint is a shell script that ignores its arguments and sleeps, so it stands in for ``cloudflared`` (which
the agent runs as ``tunnel --no-autoupdate run``) and keeps running until stopped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from flareport_cli.localredis import end_process

BUSYBOX_IMAGE = "localhost/flareport-test-busybox:latest"
BUSYBOX_APPLETS = ("sh", "sleep", "httpd", "echo", "cat", "ls", "env", "true")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

# The stand-in entrypoint: whatever arguments it gets (``tunnel --no-autoupdate run``), it sleeps until stopped.
# PID 1 ignores signals it has no handler for, hence the trap; ``wait`` is interrupted by it at once, so a stop
# takes milliseconds instead of the engine's 10 s timeout.
STAND_IN_ENTRYPOINT = """\
#!/bin/sh
trap 'exit 0' TERM INT
while true; do sleep 3600 & wait $!; done
"""


# Not under a ``flareport.`` prefix: containers inherit image labels, and the agent reads those.
REVISION_LABEL = "org.flareport-test.image-revision"


def image_revision() -> str:
    """Changes whenever what ``build_busybox_image`` puts into the image changes."""
    return hashlib.sha256((STAND_IN_ENTRYPOINT + ",".join(BUSYBOX_APPLETS)).encode()).hexdigest()[:16]


class PodmanError(RuntimeError):
    pass


def podman_available(binary: str = "podman") -> bool:
    return shutil.which(binary) is not None and shutil.which("runc") is not None


class LocalPodman:
    """``podman system service`` on ``<workdir>/podman.sock``; ``docker_host`` is the value for DOCKER_HOST."""

    def __init__(self, workdir: Path, *, binary: str = "podman") -> None:
        self.workdir = workdir
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "containers.conf"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def environ(self) -> dict[str, str]:
        """The environment for podman commands that must see the same configuration as the service."""
        return {**os.environ, "CONTAINERS_CONF": str(self.conf_path)}

    def start(self, *, timeout: float = 30.0) -> None:
        if not podman_available(self.binary):
            raise PodmanError(f"{self.binary} or runc not found; `make deps` installs them")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(CONTAINERS_CONF)
        self.socket_path.unlink(missing_ok=True)
        log = (self.workdir / "podman.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "system", "service", "--time=0", self.docker_host],
            env=self.environ(),
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise PodmanError(f"podman service did not answer /_ping; see {self.workdir / 'podman.log'}")

    def ping(self) -> bool:
        """True when the service answers ``GET /_ping`` with OK on its socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
                reply = sock.recv(256)
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.1 200") or reply.startswith(b"HTTP/1.0 200")

    def stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        end_process(process, kill=kill, timeout=15)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same socket: clients' event streams end, containers keep running."""
        self.stop(kill=kill)
        self.start()

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a podman CLI command against the same storage and configuration as the service."""
        result = subprocess.run(
            [self.binary, *args], env=self.environ(), capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def image_exists(self, name: str) -> bool:
        return self.podman("image", "exists", name, check=False).returncode == 0

    def image_revision(self, name: str) -> str | None:
        result = self.podman(
            "image", "inspect", "--format", '{{index .Config.Labels "' + REVISION_LABEL + '"}}', name, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def build_busybox_image(self, name: str = BUSYBOX_IMAGE, *, busybox: str = "/bin/busybox") -> str:
        """Import an image with a static busybox, its applets and the sleeping stand-in entrypoint, unless the
        same revision of it is already there (the storage outlives the service, so it is usually imported once)."""
        if self.image_revision(name) == image_revision():
            return name
        build_busybox_image(self.binary, self.environ(), name, busybox=busybox)
        return name


# What ``podman import --change`` / Docker's ``POST /images/create?fromSrc`` apply to the root file system.
IMAGE_CHANGES = ('ENTRYPOINT ["/entrypoint.sh"]', "CMD []", f"LABEL {REVISION_LABEL}={image_revision()}")


def write_busybox_rootfs(archive: Path, *, busybox: str = "/bin/busybox") -> None:
    """The stand-in image's root file system as a tar file (static busybox, its applets, the entrypoint), for any
    engine's import."""
    if not Path(busybox).exists():
        raise PodmanError(f"{busybox} not found; install busybox-static")
    with tempfile.TemporaryDirectory(prefix="fp-busybox-") as tmp:
        root = Path(tmp) / "root"
        (root / "bin").mkdir(parents=True)
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        entry = root / "entrypoint.sh"
        entry.write_text(STAND_IN_ENTRYPOINT)
        entry.chmod(0o755)
        (root / "tmp").mkdir()
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")


def build_busybox_image(binary: str, environ: dict[str, str], name: str, *, busybox: str = "/bin/busybox") -> None:
    with tempfile.TemporaryDirectory(prefix="fp-busybox-") as tmp:
        archive = Path(tmp) / "image.tar"
        write_busybox_rootfs(archive, busybox=busybox)
        result = subprocess.run(
            [
                binary,
                "import",
                *(arg for change in IMAGE_CHANGES for arg in ("--change", change)),
                str(archive),
                name,
            ],
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise PodmanError(f"podman import failed: {result.stderr.strip()}")


__all__ = ["BUSYBOX_IMAGE", "LocalPodman", "PodmanError", "podman_available"]
