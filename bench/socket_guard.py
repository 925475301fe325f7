"""What Flareport's socket guard lets through, next to the path-only docker-socket-proxy, and what it costs per request.

Wired like ``bench/socket_proxy.py``: a Podman service with storage of its own, Debian's ``haproxy`` with the
v0.4.1 rules of ``tecnativa/docker-socket-proxy`` and compose.yaml's flags, and ``flareport socket-guard`` (the real
command, as a process) in front of the same engine. Each row: a request, the proxy's answer, the guard's answer
(403 with the field it names). Then the added latency: ``GET /containers/json`` sent N times straight to the engine,
through the guard and through the proxy (median, p99), and the delay the guard adds to the events stream (one stream
straight from the engine and one through the guard open at once; per event, arrival through the guard minus arrival
straight from the engine).

Run: ``.venv/bin/python bench/socket_guard.py [--requests 300] [--events 40]`` (needs podman, runc, busybox-static;
haproxy for the proxy's column). Nothing is published: both listen on loopback; every container made is removed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.socket_proxy import ALL_FLAGS, FLAGS, haproxy_cfg  # noqa: E402

from flareport_cli.localredis import end_process, free_port  # noqa: E402
from fptest.e2e_podman import IsolatedPodman  # noqa: E402
from fptest.sockguard_harness import UnixHTTPConnection  # noqa: E402

V = "/v1.41"
ROOT_MOUNT = {"Type": "bind", "Source": "/", "Target": "/host"}


def agent_body(image: str, **host_config: Any) -> dict[str, Any]:
    """The body the agent's ``containers.run`` sends for cloudflared (docker SDK 7), without the network."""
    return {
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Env": ["TUNNEL_TOKEN=x"], "Cmd": ["tunnel", "--no-autoupdate", "run"], "Image": image,
        "NetworkDisabled": False,
        "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}, **host_config},
        "Labels": {"flareport.managed": "cloudflared", "flareport.tunnel_id": "t"},
    }  # fmt: skip


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request over TCP: (status, the JSON answer or its text), the answer in full (refusals name a field)."""
    address, slash, prefix = base.removeprefix("http://").partition("/")
    host, _, port = address.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    return _exchange(connection, method, slash + prefix + path, body)


def _exchange(connection: http.client.HTTPConnection, method: str, path: str, body: Any) -> tuple[int, Any]:
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    except OSError as error:
        return 0, str(error)
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return response.status, raw.decode(errors="replace")


def wait_ping(base: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while call(base, "GET", "/_ping")[0] != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer /_ping")
        time.sleep(0.1)


def direct(engine: IsolatedPodman, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return _exchange(UnixHTTPConnection(engine.socket_path), method, path, body)


def table(engine: IsolatedPodman, proxy: str | None, guard: str, image: str) -> None:
    def show(status: int, answer: Any) -> str:
        return f"403 {answer['message']}" if status == 403 and isinstance(answer, dict) else str(status)

    def clean() -> None:
        engine.podman("rm", "--all", "--force", "--time", "0", check=False)
        engine.podman("volume", "rm", "--all", "--force", check=False)
        engine.podman("network", "rm", "--force", "fp-guard-net", check=False)

    print(f"{'request':<70} {'proxy':>5}  guard")
    victim_body = {"Image": image, "Labels": {"app": "db"}, "Env": ["DB_PASSWORD=x"]}

    def victim() -> str:
        status, made = direct(engine, "POST", f"{V}/containers/create?name=fp-victim", victim_body)
        if status != 201:
            raise RuntimeError(f"cannot create the victim container: {made}")
        direct(engine, "POST", f"{V}/containers/fp-victim/start")
        return str(made["Id"])

    creates: list[tuple[str, dict[str, Any]]] = [
        ("the agent's cloudflared", agent_body(image)),
        ("privileged, host / bind-mounted at /host", agent_body(image, Privileged=True, Binds=["/:/host"])),
        ("host / as a Mounts entry, host PID namespace", agent_body(image, Mounts=[ROOT_MOUNT], PidMode="host")),
        ("CapAdd ALL, host network, no mounts at all", agent_body(image, CapAdd=["ALL"], NetworkMode="host")),
        (
            "a host device",
            agent_body(
                image, Devices=[{"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}]
            ),
        ),
        ("seccomp unconfined", agent_body(image, SecurityOpt=["seccomp=unconfined"])),
        ("another entrypoint", {**agent_body(image), "Entrypoint": ["sh", "-c", "id"]}),
        ("another image", {**agent_body(image), "Image": "localhost/fp-bench-other:1"}),
        ("no ownership label", {**agent_body(image), "Labels": {}}),
    ]
    engine.podman("tag", image, "localhost/fp-bench-other:1", check=False)
    for what, body in creates:
        row = [f"POST /containers/create  {what}"]
        for base in (proxy, guard):
            if base is None:
                row.append("-")
                continue
            status, answer = call(base + V, "POST", "/containers/create?name=flareport-cloudflared", body)
            row.append(show(status, answer))
            clean()
        print(f"{row[0]:<70} {row[1]:>5}  {row[2]}")
    others: list[tuple[str, str, str, Any]] = [
        ("POST /containers/{victim}/exec", "POST", f"{V}/containers/fp-victim/exec", {"Cmd": ["id"]}),
        ("GET /containers/{victim}/archive?path=/etc", "GET", f"{V}/containers/fp-victim/archive?path=/etc", None),
        ("POST /containers/{victim}/stop  (not the agent's)", "POST", f"{V}/containers/fp-victim/stop?t=0", None),
        ("DELETE /containers/{victim}  (not the agent's)", "DELETE", f"{V}/containers/fp-victim?force=1", None),
        ("POST /volumes/create", "POST", f"{V}/volumes/create", {"Name": "fp-x"}),
        ("POST /networks/create  another name", "POST", f"{V}/networks/create", {"Name": "fp-guard-net"}),
        (
            "POST /images/create  another image",
            "POST",
            f"{V}/images/create?fromImage=127.0.0.1:9/attacker/miner&tag=1",
            None,
        ),
        ("POST /v4.0.0/libpod/containers/create  privileged", "POST", "/v4.0.0/libpod/containers/create",
         {"image": image, "privileged": True}),
    ]  # fmt: skip
    for what, method, path, body in others:
        row = [what]
        for base in (proxy, guard):
            if base is None:
                row.append("-")
                continue
            victim()
            status, answer = call(base, method, path, body)
            row.append(show(status, answer))
            clean()
        print(f"{row[0]:<70} {row[1]:>5}  {row[2]}")
    engine.podman("rmi", "localhost/fp-bench-other:1", check=False)


def timed(request: Callable[[], int], count: int) -> list[float]:
    took: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        status = request()
        took.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"unexpected status {status}")
    return took


def keepalive(connect: Callable[[], http.client.HTTPConnection], path: str) -> Callable[[], int]:
    connection = connect()

    def request() -> int:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status

    return request


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered):6.2f} ms  p99 {p99:6.2f} ms  (n={len(ordered)})"


def stream_arrivals(
    connect: Callable[[], http.client.HTTPConnection], seen: dict[tuple[str, str], float], ready: threading.Event
) -> Callable[[], None]:
    connection = connect()
    connection.request("GET", f"{V}/events?filters=" + json.dumps({"type": ["container"]}).replace(" ", ""))
    response = connection.getresponse()
    ready.set()

    def read() -> None:
        try:
            while True:
                line = response.readline()
                if not line:
                    return
                event = json.loads(line)
                seen.setdefault((str(event.get("id")), str(event.get("Action"))), time.perf_counter())
        except (OSError, ValueError, http.client.HTTPException):
            return

    threading.Thread(target=read, daemon=True).start()
    return connection.close


def latency(engine: IsolatedPodman, proxy_port: int | None, guard_port: int, image: str, args: Any) -> None:
    def engine_connection() -> http.client.HTTPConnection:
        return UnixHTTPConnection(engine.socket_path)

    def tcp(port: int) -> Callable[[], http.client.HTTPConnection]:
        return lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    for index in range(5):  # a few containers to list
        direct(engine, "POST", f"{V}/containers/create?name=fp-list-{index}", {"Image": image})
    path = f"{V}/containers/json?all=1"
    print(f"\nGET {path}, {args.requests} requests on one keep-alive connection each:")
    targets: list[tuple[str, Callable[[], http.client.HTTPConnection]]] = [
        ("straight to the engine", engine_connection),
        ("through the guard", tcp(guard_port)),
    ]
    if proxy_port is not None:
        targets.append(("through the proxy (haproxy)", tcp(proxy_port)))
    results: dict[str, list[float]] = {}
    for what, connect in targets:
        request = keepalive(connect, path)
        timed(request, 20)  # warm up
        results[what] = timed(request, args.requests)
        print(f"  {what:<30} {summary(results[what])}")
    added = statistics.median(results["through the guard"]) - statistics.median(results["straight to the engine"])
    print(f"  the guard adds {added:.2f} ms at the median")

    streams: dict[str, dict[tuple[str, str], float]] = {"engine": {}, "guard": {}}
    ready = [threading.Event(), threading.Event()]
    closers = [
        stream_arrivals(engine_connection, streams["engine"], ready[0]),
        stream_arrivals(tcp(guard_port), streams["guard"], ready[1]),
    ]
    made: list[str] = []
    for index in range(args.events):
        status, answer = direct(engine, "POST", f"{V}/containers/create?name=fp-ev-{index}", {"Image": image})
        if status == 201:
            made.append(str(answer["Id"]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all((cid, "create") in streams["guard"] for cid in made):
        time.sleep(0.05)
    for close in closers:
        close()
    delays = [
        (streams["guard"][(cid, "create")] - streams["engine"][(cid, "create")]) * 1000
        for cid in made
        if (cid, "create") in streams["guard"] and (cid, "create") in streams["engine"]
    ]
    print(
        f"\nEvents stream: {len(made)} container creates, each event through the guard minus straight from the engine:"
    )
    if delays:
        print(f"  added delay {summary(delays)}")
    else:
        print("  no events seen through both streams")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--events", type=int, default=40)
    args = parser.parse_args()
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install -y podman runc busybox-static)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="fp-sockguard-") as tmp:
        engine = IsolatedPodman(Path(tmp) / "podman")
        engine.start()
        proxy: subprocess.Popen[bytes] | None = None
        guard: subprocess.Popen[bytes] | None = None
        try:
            image = engine.build_busybox_image()
            proxy_port: int | None = None
            if shutil.which("haproxy") is not None:
                proxy_port = free_port()
                cfg = Path(tmp) / "haproxy.cfg"
                cfg.write_text(haproxy_cfg(engine.socket_path, proxy_port))
                env = {flag: str(FLAGS.get(flag, 0)) for flag in ALL_FLAGS}
                proxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], env={"PATH": "/usr/sbin:/usr/bin", **env})
                wait_ping(f"http://127.0.0.1:{proxy_port}", "haproxy")
            guard_port = free_port()
            flareport = str(Path(sys.executable).parent / "flareport")
            guard = subprocess.Popen(
                [flareport, "socket-guard", "--listen", f"tcp:127.0.0.1:{guard_port}", "--upstream",
                 engine.docker_host, "--image", image],
                env={**os.environ, "LOG_LEVEL": "error", "LOG_FORMAT": "json"},
            )  # fmt: skip
            wait_ping(f"http://127.0.0.1:{guard_port}", "the socket guard")
            print(f"engine: Podman ({engine.docker_host}); proxy: haproxy with compose.yaml's flags; guard: "
                  f"flareport socket-guard --image {image}\n")  # fmt: skip
            table(engine, None if proxy_port is None else f"http://127.0.0.1:{proxy_port}",
                  f"http://127.0.0.1:{guard_port}", image)  # fmt: skip
            latency(engine, proxy_port, guard_port, image, args)
        finally:
            end_process(guard)
            end_process(proxy)
            engine.remove_all()
            engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
