"""``flareport dev`` (what ``make run`` starts): the whole stack on this machine, each service its own process.

Embedded defaults, all overridable by the usual environment variables:
- a local ``redis-server`` with AOF, data under ``./.flareport/redis`` (``REDIS_URL`` or ``REDIS_SENTINELS`` set =
  use that Redis);
- the Cloudflare emulator seeded with an example account and zone ``example.test``, its state kept in
  ``./.flareport/cloudflare-emulator.json`` (``CLOUDFLARE_API_TOKEN`` set = real Cloudflare instead);
- the API on http://127.0.0.1:8080 (``FLAREPORT_API_PORT``), the reconciler and the dns-worker;
- an agent for the local engine: ``DOCKER_HOST`` if set, else /var/run/docker.sock if present, else a Podman
  API service started here (its socket under ``./.flareport/podman``).
The master key is generated once and kept in ``./.flareport/master-key`` (mode 0600). Ctrl-C stops everything.

Everything under ``./.flareport`` is private to the user running it: directories 0700, files 0600 (the Redis AOF
and RDB files hold tunnel tokens and keys). Our own writes are 0600, and every child process (Redis, the services)
runs with umask 0o077 — except Podman's service, whose files for containers must stay readable by their non-root
users; its socket and log under ``./.flareport/podman`` are tightened once it is up. What an earlier run left more
open is tightened at start. The local Redis requires a password, generated once and kept in
``./.flareport/redis-password`` (0600); Redis reads it from its config file (``./.flareport/redis/redis.conf``,
0600), never from its command line, and the services get it in ``REDIS_URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flareport_cli.localredis import LocalRedis, free_port
from flareport_cli.supervisor import Supervisor

DEMO_ACCOUNT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
DEMO_ZONE_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DEMO_ZONE = "example.test"
DEMO_TOKEN = "flareport-dev-token"  # noqa: S105 - the local emulator accepts only this token
# The umask of the dev stack's own writes and of every process it starts: nothing it writes is for other users.
PRIVATE_UMASK = 0o077


def _secret_file(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    _write_private(path, value + "\n", exclusive=True)
    return value


def _write_private(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``path`` with mode 0600 whatever the umask (and an existing file's mode)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def make_private(root: Path) -> list[Path]:
    """Create ``root`` 0700, and take group and other permissions off everything of ours under it (an earlier run,
    or an older release, may have left 0755 directories and 0644 files). Symlinks are not followed; files of another
    user are left alone. Returns what was changed."""
    root.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    uid = os.geteuid()

    def tighten(path: Path) -> None:
        try:
            info = path.lstat()
        except FileNotFoundError:  # a child renamed or removed it meanwhile
            return
        if stat.S_ISLNK(info.st_mode) or info.st_uid != uid or not stat.S_IMODE(info.st_mode) & 0o077:
            return
        with contextlib.suppress(FileNotFoundError):
            path.chmod(stat.S_IMODE(info.st_mode) & ~0o077)
            changed.append(path)

    tighten(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            tighten(Path(folder) / name)
    return changed


def _http_json(method: str, url: str, key: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - our own local URL
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _seed(path: Path) -> Path:
    seed = {
        "accounts": [{"id": DEMO_ACCOUNT_ID, "name": "Flareport demo account"}],
        "zones": [{"id": DEMO_ZONE_ID, "name": DEMO_ZONE, "account_id": DEMO_ACCOUNT_ID, "status": "active"}],
    }
    _write_private(path, json.dumps(seed, indent=2))
    return path


class DevStack:
    def __init__(
        self, data_dir: Path, *, api_port: int, echo: bool = True, environ: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.environ = dict(os.environ if environ is None else environ)
        self.api_port = api_port
        self.supervisor = Supervisor(echo=echo, umask=PRIVATE_UMASK)
        self.redis: LocalRedis | None = None
        self.podman: Any = None
        self.env: dict[str, str] = {}
        self.master_key = ""
        self.agent_key_id = ""
        self.agent_id: str | None = None
        self.docker_host = ""
        self.api_url = f"http://127.0.0.1:{api_port}"

    def _python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def start(self, *, agent: bool = True) -> None:
        make_private(self.data_dir)
        env = dict(self.environ)
        env.setdefault("LOG_FORMAT", "console")
        self.master_key = env.get("MASTER_API_KEY") or _secret_file(self.data_dir / "master-key")
        env["MASTER_API_KEY"] = self.master_key
        if not env.get("FLAREPORT_ADMIN_PASSWORD_HASH"):
            env.setdefault("FLAREPORT_ADMIN_PASSWORD", _secret_file(self.data_dir / "admin-password"))
        # REDIS_SENTINELS set: the Sentinels name the Redis to use, as REDIS_URL would.
        if not env.get("REDIS_URL") and not env.get("REDIS_SENTINELS"):
            password = _secret_file(self.data_dir / "redis-password")
            self.redis = LocalRedis(self.data_dir / "redis", aof=True, password=password, umask=PRIVATE_UMASK)
            self.redis.start()
            env["REDIS_URL"] = self.redis.url
        if not env.get("CLOUDFLARE_API_TOKEN"):
            self._start_emulator(env)
        env["FLAREPORT_API_HOST"] = "127.0.0.1"
        env["FLAREPORT_API_PORT"] = str(self.api_port)
        self.env = env
        self.supervisor.start("api", self._python("-m", "flareport_cli", "api"), env)
        _wait_http(f"{self.api_url}/healthz", 30)
        for service in ("reconciler", "dns-worker"):
            self.supervisor.start(
                service,
                self._python("-m", "flareport_cli", service),
                {**env, "FLAREPORT_HEALTH_PORT": str(free_port())},
            )
        if agent:
            self._start_agent(env)
        # What the children created before their first write under our umask (Podman's socket and log, which
        # it opens with the caller's umask) is private too.
        make_private(self.data_dir)

    def _start_emulator(self, env: dict[str, str]) -> None:
        child = self.supervisor.start(
            "cloudflare",
            self._python(
                "-m", "flareport_cfemu", "--port", "0",
                "--seed", str(_seed(self.data_dir / "cloudflare-seed.json")),
                "--state-file", str(self.data_dir / "cloudflare-emulator.json"),
                "--token", DEMO_TOKEN,
            ),
            env,
        )  # fmt: skip
        line = self.supervisor.wait_for_line(child, lambda text: "listening on" in text, 30)
        env["CLOUDFLARE_API_BASE_URL"] = line.rsplit(" ", 1)[-1]
        env["CLOUDFLARE_API_TOKEN"] = DEMO_TOKEN
        env["CLOUDFLARE_ACCOUNT_ID"] = DEMO_ACCOUNT_ID
        env["CLOUDFLARE_ZONE_ID"] = DEMO_ZONE_ID

    def _docker_host(self) -> str:
        if self.environ.get("DOCKER_HOST"):
            return self.environ["DOCKER_HOST"]
        if Path("/var/run/docker.sock").exists():
            return "unix:///var/run/docker.sock"
        from flareport_cli.localpodman import LocalPodman

        self.podman = LocalPodman(self.data_dir / "podman")
        self.podman.start()
        return str(self.podman.docker_host)

    def _start_agent(self, env: dict[str, str]) -> None:
        key_file = self.data_dir / "agent-key"
        if key_file.exists():
            self.agent_key_id, agent_key = key_file.read_text().split()
        else:
            created = _http_json("POST", f"{self.api_url}/api/v1/keys", self.master_key, {"label": "local agent"})
            self.agent_key_id, agent_key = created["info"]["key_id"], created["key"]
            _write_private(key_file, f"{self.agent_key_id} {agent_key}\n", exclusive=True)
        self.docker_host = self._docker_host()
        agent_env = {
            **env,
            "FLAREPORT_MASTER_URL": self.api_url,
            "FLAREPORT_API_KEY": agent_key,
            "DOCKER_HOST": self.docker_host,
            "AGENT_DATA_DIR": str(self.data_dir / "agent"),
            "FLAREPORT_HEALTH_PORT": str(free_port()),
        }
        self.supervisor.start("agent", self._python("-m", "flareport_cli", "agent"), agent_env)

    def enroll_local_agent(self, timeout: float = 60.0) -> str:
        """Wait for the local agent to register, then enrol it (once) with a tunnel of its own."""
        deadline = time.monotonic() + timeout
        agent_id: str | None = None
        while agent_id is None:
            info = _http_json("GET", f"{self.api_url}/api/v1/keys/{self.agent_key_id}", self.master_key)
            agent_id = info.get("agent_id") or info.get("info", {}).get("agent_id")
            if agent_id is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the local agent did not register within {timeout}s")
                time.sleep(0.2)
        detail = _http_json("GET", f"{self.api_url}/api/v1/agents/{agent_id}", self.master_key)
        if detail["agent"]["status"] == "pending":
            _http_json(
                "POST",
                f"{self.api_url}/api/v1/agents/{agent_id}/enroll",
                self.master_key,
                {"tunnel_name": f"flareport-dev-{socket.gethostname()}"},
            )
        self.agent_id = agent_id
        return agent_id

    def stop(self) -> None:
        self.supervisor.stop_all()
        if self.podman is not None:
            self.podman.stop()
        if self.redis is not None:
            self.redis.stop()

    def _redis_shown(self) -> str:
        url = self.env.get("REDIS_URL", "")
        if self.redis is None or not self.redis.password:
            return url
        masked = url.replace(f":{self.redis.password}@", ":***@")
        return f"{masked}   (password in {self.data_dir / 'redis-password'})"

    def banner(self) -> str:
        cloudflare = self.env.get("CLOUDFLARE_API_BASE_URL", "")
        return "\n".join(
            [
                "",
                "Flareport is running.",
                f"  API          {self.api_url}/api/v1   (health /healthz, metrics /metrics)",
                f"  Web UI       {self.api_url}/   (user {self.env.get('FLAREPORT_ADMIN_USER', 'admin')}, password "
                + (
                    f"{self.env['FLAREPORT_ADMIN_PASSWORD']}, kept in {self.data_dir / 'admin-password'})"
                    if self.env.get("FLAREPORT_ADMIN_PASSWORD")
                    else "from FLAREPORT_ADMIN_PASSWORD_HASH)"
                ),
                f"  Master key   {self.master_key}   (kept in {self.data_dir / 'master-key'})",
                f"  Redis        {self._redis_shown()}",
                f"  Cloudflare   {cloudflare}"
                + ("   (emulator; state: /__emulator/state)" if "127.0.0.1" in cloudflare else ""),
                "",
                f"  Local agent  {self.agent_id or 'not started'}"
                + ("   (enrolled with its own tunnel)" if self.agent_id else ""),
                f"  Docker       {self.docker_host or 'not used'}",
                "",
                "Publish a container, then watch its rule become active:",
                f"  DOCKER_HOST={self.docker_host or 'unix:///var/run/docker.sock'} docker run -d "
                f"-l flareport.enable=true -l flareport.hostname=app.{DEMO_ZONE} -l flareport.service=http://app:80 "
                "<image>",
                f"  curl -s -H 'Authorization: Bearer {self.master_key}' {self.api_url}/api/v1/rules",
                f"  curl -s {cloudflare.removesuffix('/client/v4')}/__emulator/state   # the emulator's DNS and tunnels"
                if "127.0.0.1" in cloudflare
                else "",
                "Press Ctrl-C to stop everything.",
                "",
            ]
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="flareport dev", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FLAREPORT_DATA_DIR", ".flareport")))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("FLAREPORT_API_PORT", "8080")))
    parser.add_argument("--no-agent", action="store_true", help="start the control plane only")
    parser.add_argument("--no-enroll", action="store_true", help="leave the local agent pending (enrol it yourself)")
    args = parser.parse_args(list(argv))
    if shutil.which("redis-server") is None and not os.environ.get("REDIS_URL"):
        print(
            "flareport dev: redis-server not found; run `make run` (it installs it) or set REDIS_URL", file=sys.stderr
        )
        return 2
    stack = DevStack(args.data_dir.resolve(), api_port=args.api_port)
    # SIGTERM/SIGHUP (a closed terminal, `kill`, a supervisor) stop the stack like Ctrl-C: no orphaned children.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        stack.start(agent=not args.no_agent)
        if not args.no_agent and not args.no_enroll:
            stack.enroll_local_agent()
        print(stack.banner(), flush=True)
        while not stack.supervisor.exited():
            time.sleep(0.5)
        for child in stack.supervisor.exited():
            print(f"flareport dev: {child.name} exited with status {child.process.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nflareport dev: stopping", flush=True)
        return 0
    except (RuntimeError, TimeoutError, OSError, urllib.error.URLError) as exc:
        print(f"flareport dev: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
