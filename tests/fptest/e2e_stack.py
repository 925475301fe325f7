"""The whole Flareport stack as real processes, for the system tests (tests/e2e).

``E2EStack`` wraps ``flareport_cli.dev.DevStack`` (what ``flareport dev`` starts: redis-server with AOF, the
Cloudflare emulator, api, reconciler, dns-worker and an agent) and points it at an ``IsolatedPodman`` host of its
own, so containers other tests run on the machine never reach its agents. More hosts (a Podman service and an agent
process each) and more control-plane replicas are started with the same supervisor, so ``close()`` stops them all.

Everything here is synchronous (urllib, the docker SDK): the tests drive real processes and only wait on
conditions with deadlines (``wait_for_sync``).
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

from flareport_cli.dev import DevStack
from flareport_cli.localredis import free_port
from flareport_cli.supervisor import Child, Supervisor
from flareport_common.keys import DEFAULT_PREFIX, Keys
from fptest.e2e_podman import IsolatedPodman
from fptest.waiting import wait_for_sync

ZONE = "example.test"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Generous but bounded: the machine is shared, and a convergence includes a few Redis and Cloudflare round trips.
CONVERGE_TIMEOUT = 90.0

# Variables of the developer's shell that would point the stack elsewhere than at its own processes.
_FOREIGN = ("REDIS_URL", "MASTER_API_KEY", "DOCKER_HOST", "CLOUDFLARE_", "CF_", "FLAREPORT_", "DOCKFLARE_", "AGENT_")


@dataclass
class Host:
    """One simulated Docker host: its engine, an SDK client for it and the agent process watching it."""

    name: str
    podman: IsolatedPodman
    docker: docker.DockerClient
    agent: Child | None = None
    agent_env: dict[str, str] | None = None
    agent_health_port: int = 0

    def agent_metric(self, name: str, **labels: str) -> float:
        """A value from the agent's /metrics (0 when absent or the agent is not answering)."""
        status, text = http("GET", f"http://127.0.0.1:{self.agent_health_port}/metrics")
        if status != 200 or not isinstance(text, str):
            return 0.0
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def run(self, name: str, labels: Mapping[str, str], image: str) -> Container:
        return self.docker.containers.run(image, detach=True, name=name, labels=dict(labels))

    def labelled(self, name: str, hostname: str, image: str, **extra: str) -> Container:
        labels = {
            "flareport.enable": "true",
            "flareport.hostname": hostname,
            "flareport.service": f"http://{name}:80",
            **{f"flareport.{key.replace('__', '.')}": value for key, value in extra.items()},
        }
        return self.run(name, labels, image)


class E2EStack:
    def __init__(self, workdir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.hosts: dict[str, Host] = {}
        self.image = ""
        environ = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        # The suite's Cloudflare contract checks reach the stack's emulator too (tests/conftest.py).
        environ.update({k: v for k, v in os.environ.items() if k.startswith("FLAREPORT_CFEMU_CONTRACTS")})
        environ.update({"LOG_FORMAT": "json", "LOG_LEVEL": "info", "GRACE_PERIOD_SECONDS": "3"})
        environ.update(settings or {})
        self._environ = environ
        self.dev: DevStack | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> E2EStack:
        first = self._new_host("host1")
        self._environ.update({"DOCKER_HOST": first.podman.docker_host, "CLOUDFLARED_IMAGE": self.image})
        self.dev = DevStack(self.workdir / "dev", api_port=free_port(), echo=False, environ=self._environ)
        self.dev.start(agent=True)
        first.agent = self.dev.supervisor.children[-1]
        first.agent_env = self._agent_env_of_dev()
        mode = self._environ.get("FLAREPORT_CFEMU_CONTRACTS")
        if mode:  # the stack's emulator holds the dns-worker's calls against the SDK's types (tests/conftest.py)
            assert self.emu("GET", "/__emulator/contracts")["mode"] == mode
        return self

    def _agent_env_of_dev(self) -> dict[str, str]:
        return {
            **self.env,
            "FLAREPORT_MASTER_URL": self.api_url,
            # The key file holds "<key id> <key>" (or, written by older versions, the key alone).
            "FLAREPORT_API_KEY": (self.workdir / "dev" / "agent-key").read_text().split()[-1],
            "DOCKER_HOST": self.hosts["host1"].podman.docker_host,
            "AGENT_DATA_DIR": str(self.workdir / "dev" / "agent"),
        }

    def _new_host(self, name: str) -> Host:
        podman = IsolatedPodman(self.workdir / name)
        podman.start()
        self.image = podman.build_busybox_image()
        host = Host(name, podman, docker.DockerClient(base_url=podman.docker_host, timeout=60))
        self.hosts[name] = host
        return host

    def add_host(self, name: str) -> Host:
        """A second simulated host: its own engine and an agent with its own key and data directory."""
        host = self._new_host(name)
        key = self.admin("POST", "/api/v1/keys", {"label": name})["key"]
        host.agent_env = {
            **self.env,
            "FLAREPORT_MASTER_URL": self.api_url,
            "FLAREPORT_API_KEY": key,
            "DOCKER_HOST": host.podman.docker_host,
            "AGENT_DATA_DIR": str(self.workdir / name / "agent"),
        }
        self.start_agent(host)
        return host

    def start_agent(self, host: Host) -> Child:
        assert host.agent_env is not None
        host.agent_health_port = free_port()
        env = {**host.agent_env, "FLAREPORT_HEALTH_PORT": str(host.agent_health_port)}
        child: Child = self.supervisor.start(f"agent-{host.name}", [*self._python(), "agent"], env)
        host.agent = child
        return child

    def start_service(self, service: str, name: str | None = None, **extra: str) -> Child:
        """Another process of a control-plane service (a replica), configured like the first one."""
        env = {**self.env, "FLAREPORT_HEALTH_PORT": str(free_port()), **extra}
        child: Child = self.supervisor.start(name or service, [*self._python(), service], env)
        return child

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the running child called ``name`` and wait for it to exit."""
        self.supervisor.stop(self.child(name), sig=sig, grace=15)

    def restart_api(self) -> None:
        """Start the API again on its port (what the agents know), once the previous process is gone."""
        self.supervisor.start("api", [*self._python(), "api"], self.env)
        wait_for_sync(lambda: self.api("GET", "/healthz")[0] == 200, timeout=30, interval=0.1, what="the API back")

    def _python(self) -> list[str]:
        assert self.dev is not None
        return self.dev._python("-m", "flareport_cli")

    def close(self) -> None:
        """Stop everything; a second call does nothing (a fixture may close a stack before what it depends on)."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            host.podman.remove_all()
        if self.dev is not None:
            self.dev.stop()
        for host in self.hosts.values():
            host.docker.close()
            host.podman.close()

    # ----------------------------------------------------------------- accessors
    @property
    def supervisor(self) -> Supervisor:
        assert self.dev is not None
        return self.dev.supervisor

    @property
    def env(self) -> dict[str, str]:
        assert self.dev is not None
        return self.dev.env

    @property
    def keys(self) -> Keys:
        """The stack's Redis key names (its services' prefix)."""
        return Keys(self.env.get("FLAREPORT_KEY_PREFIX", DEFAULT_PREFIX))

    @property
    def api_url(self) -> str:
        assert self.dev is not None
        return self.dev.api_url

    @property
    def master_key(self) -> str:
        assert self.dev is not None
        return self.dev.master_key

    @property
    def emulator_url(self) -> str:
        return self.env["CLOUDFLARE_API_BASE_URL"].removesuffix("/client/v4")

    def child(self, name: str) -> Child:
        return next(c for c in self.supervisor.children if c.name == name and c.process.poll() is None)

    # ----------------------------------------------------------------- HTTP
    def api(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> tuple[int, Any]:
        """(status, decoded body) of an API call; errors are returned, not raised."""
        return http(method, self.api_url + path, body, key=self.master_key if key is None else key)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.api(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status} {answer}"
        return answer

    def emu(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = http(method, self.emulator_url + path, body)
        assert 200 <= status < 300, f"emulator {method} {path} -> {status} {answer}"
        return answer["result"] if isinstance(answer, dict) and "result" in answer else answer

    def cf(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A call to the emulated Cloudflare API itself (as a dashboard user would make it)."""
        return http(method, self.env["CLOUDFLARE_API_BASE_URL"] + path, body, key=self.env["CLOUDFLARE_API_TOKEN"])

    # ----------------------------------------------------------------- read model
    def agents(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/api/v1/agents")["agents"])

    def agent(self, agent_id: str) -> dict[str, Any]:
        return dict(self.admin("GET", f"/api/v1/agents/{agent_id}")["agent"])

    def rules(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/api/v1/rules")["rules"])

    def rules_of(self, hostname: str) -> list[dict[str, Any]]:
        return [rule for rule in self.rules() if rule["hostname"] == hostname]

    def wait_new_agent(self, known: set[str], timeout: float = 60) -> dict[str, Any]:
        def fresh() -> dict[str, Any]:
            return next((a for a in self.agents() if a["agent_id"] not in known), {})

        return wait_for_sync(fresh, timeout=timeout, interval=0.2, what="a newly registered agent")

    def enroll(self, agent_id: str, tunnel_name: str, timeout: float = 60) -> str:
        """Enrol and wait until the agent is active with its tunnel; the tunnel id."""
        self.admin("POST", f"/api/v1/agents/{agent_id}/enroll", {"tunnel_name": tunnel_name})
        record = wait_for_sync(
            lambda: (lambda a: a if a["status"] == "active" and a.get("tunnel_id") else {})(self.agent(agent_id)),
            timeout=timeout,
            interval=0.2,
            what=f"agent {agent_id} active with tunnel {tunnel_name}",
        )
        return str(record["tunnel_id"])

    # ----------------------------------------------------------------- emulator state
    def cf_state(self) -> dict[str, Any]:
        return dict(self.emu("GET", "/__emulator/state"))

    def dns_records(self, state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        state = state or self.cf_state()
        return [record for zone in state["dns_records"].values() for record in zone.values()]

    def ingress(self, tunnel_id: str, state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        state = state or self.cf_state()
        config = state["tunnel_configs"].get(tunnel_id, {}).get("config") or {}
        return list(config.get("ingress") or [])

    def access_apps(self, state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        state = state or self.cf_state()
        return list(state["access_apps"].values())

    def writes(self) -> dict[str, int]:
        """Cloudflare API calls that change something so far, per endpoint (the control endpoints are not counted)."""
        counters = self.emu("GET", "/__emulator/requests?limit=1")["counters"]
        return {endpoint: n for endpoint, n in counters.items() if endpoint.split(" ", 1)[0] in WRITE_METHODS}

    def published(self, tunnel_id: str, wanted: Mapping[str, str]) -> str | None:
        """None when Cloudflare holds exactly ``wanted`` (hostname -> service) for the tunnel: one proxied CNAME per
        hostname to the tunnel, no other CNAME of ours to it, and ingress rules for exactly those hostnames, ahead of
        a catch-all at the end. Otherwise a description of the difference (for the failure message)."""
        state = self.cf_state()
        target = f"{tunnel_id}.cfargotunnel.com"
        ours = [r for r in self.dns_records(state) if r["type"] == "CNAME" and r["content"] == target]
        names = sorted(r["name"] for r in ours)
        if names != sorted(wanted):
            missing = sorted(set(wanted) - set(names))
            extra = sorted(n for n in set(names) if n not in wanted)
            duplicated = sorted({n for n in names if names.count(n) > 1})
            return f"CNAMEs differ: missing {missing[:5]}, extra {extra[:5]}, duplicated {duplicated[:5]}"
        if not all(r["proxied"] for r in ours):
            return "a CNAME is not proxied"
        ingress = self.ingress(tunnel_id, state)
        if not ingress or "hostname" in ingress[-1]:
            return f"no catch-all at the end of the ingress: {ingress[-3:]}"
        rules = {(r.get("hostname"), r["service"]) for r in ingress[:-1]}
        if rules != set(wanted.items()) or len(ingress) - 1 != len(wanted):
            return f"ingress differs: {len(ingress) - 1} rules, wanted {len(wanted)}"
        return None

    def wait_published(self, tunnel_id: str, wanted: Mapping[str, str], timeout: float = CONVERGE_TIMEOUT) -> None:
        last: list[str | None] = [None]

        def check() -> bool:
            last[0] = self.published(tunnel_id, wanted)
            return last[0] is None

        try:
            wait_for_sync(check, timeout=timeout, interval=0.3, what=f"Cloudflare to hold {len(wanted)} hostnames")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last[0]}; {self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """What a failed convergence leaves behind: streams with pending work, rules not active, dead children."""
        status, answer = self.api("GET", "/api/v1/status")
        streams = answer.get("streams", []) if status == 200 and isinstance(answer, dict) else answer
        busy = [s for s in streams if any(g["pending"] or g.get("lag") for g in s.get("groups", []))]
        rules = self.rules() if status == 200 else []
        stuck = [(r["hostname"], r["status"], r.get("ingress_state"), r.get("dns_state")) for r in rules]
        stuck = [r for r in stuck if r[1] != "active"]
        dead = [(c.name, c.process.returncode) for c in self.supervisor.children if c.process.poll() is not None]
        return f"busy streams {busy}; rules not active {stuck[:8]} ({len(stuck)}); exited {dead}"

    def idle(self) -> bool:
        """Every stream's consumer groups have read and acknowledged everything (nothing left to do)."""
        status = self.admin("GET", "/api/v1/status")
        groups = [group for stream in status["streams"] for group in stream["groups"]]
        return all(group["pending"] == 0 and group.get("lag") in (0, None) for group in groups)

    def stream_length(self, name: str) -> int:
        """Length of the stream whose key ends with ``:<name>`` (``events``, ``cf-jobs``, ...)."""
        status = self.admin("GET", "/api/v1/status")
        return sum(int(s["length"]) for s in status["streams"] if s["stream"].endswith(f":{name}"))

    def wait_idle(self, timeout: float = CONVERGE_TIMEOUT, polls: int = 3) -> None:
        """Wait until the control plane is idle on ``polls`` consecutive checks (a job's result can start more)."""
        streak = [0]

        def check() -> bool:
            streak[0] = streak[0] + 1 if self.idle() else 0
            return streak[0] >= polls

        wait_for_sync(check, timeout=timeout, interval=0.5, what="the control plane idle")

    def wait_rules_active(self, hostnames: set[str], timeout: float = CONVERGE_TIMEOUT) -> None:
        others: list[dict[str, Any]] = []

        def check() -> bool:
            rules = [r for r in self.rules() if r["hostname"] in hostnames]
            others[:] = [r for r in rules if r["status"] != "active"]
            return {r["hostname"] for r in rules if r["status"] == "active"} >= hostnames

        try:
            wait_for_sync(check, timeout=timeout, interval=0.3, what=f"{len(hostnames)} rules active")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not active: {others[:3]}") from None


def http(method: str, url: str, body: Any = None, *, key: str | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback URLs of the test stack
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _decode(error.read())
    except (urllib.error.URLError, ConnectionError) as error:
        return 0, str(error)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")
