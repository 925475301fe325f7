"""The control plane as real processes on loopback, for the benchmarks.

``BenchStack`` starts a private redis-server, the Cloudflare emulator (its own process, seeded with one account and
the zone ``example.test``, with the rate limit and window the scenario asks for), one API, N reconcilers and one
dns-worker, each with its log in the work directory. Agents are not started here: the scenarios simulate them over
HTTP (``harness.agents``), which is what lets a 2-core machine stand in for 1,000 hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis, free_port
from flareport_common.keys import GROUP_DNS_WORKER, GROUP_RECONCILER, Keys

ACCOUNT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ZONE_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
# The zone predates the 200-record quota of Free zones created since September 2024: the bench writes thousands.
OLD_ZONE_CREATED_ON = "2024-01-01T00:00:00.000000Z"
ZONE = "example.test"
TOKEN = "flareport-bench-token"  # noqa: S105 - the emulator accepts only this token
MASTER = "bench-master-key-0123456789abcdef"
PREFIX = "fpbench:"


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far; a zombie still tells its final figure."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime (fields 14 and 15 of stat)


def cpu_seconds_precise(pid: int) -> float | None:
    """CPU seconds of a process's live threads so far, in nanoseconds' resolution (``/proc/<pid>/task/*/schedstat``,
    the scheduler's run time): ``cpu_seconds`` counts 10 ms clock ticks, so an idle window of four processes read
    with it swings by about +-0.02 CPU-s. Threads that ended are not counted: for windows without threads ending
    (idle). None where the kernel does not keep schedstat."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


class BenchStack:
    def __init__(
        self,
        workdir: Path,
        *,
        reconcilers: int = 1,
        rate_limit: int = 10**9,
        rate_window: float = 300.0,
        per_second: int = 200,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.reconcilers = reconcilers
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        # Cloudflare's requests per second from one address: the emulator refuses more, the dns-worker keeps below.
        self.per_second = per_second
        self.extra_env = extra_env or {}
        self.redis_server: LocalRedis | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_urls: dict[str, str] = {}  # name -> its /metrics (the API's on its port, the others' health port)
        self._commands: dict[str, tuple[str, dict[str, str]]] = {}  # name -> (service, extra env): for restarts
        self._logs: list[IO[bytes]] = []
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.emulator_url = ""  # without /client/v4
        self.keys = Keys(PREFIX)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BenchStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_server = LocalRedis(self.workdir / "redis")
        self.redis_server.start()
        port = free_port()
        # Only our own variables: a developer's shell must not point the bench at another Redis or Cloudflare.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FLAREPORT_", "CLOUDFLARE_", "REDIS_"))}
        self.env = {
            **base,
            "REDIS_URL": self.redis_server.url,
            "FLAREPORT_KEY_PREFIX": PREFIX,
            "MASTER_API_KEY": MASTER,
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
            "FLAREPORT_API_HOST": "127.0.0.1",
            "FLAREPORT_API_PORT": str(port),
            "CLOUDFLARE_API_TOKEN": TOKEN,
            "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
            "CLOUDFLARE_ZONE_ID": ZONE_ID,
            "CLOUDFLARE_RATE_LIMIT_REQUESTS": str(self.rate_limit),
            "CLOUDFLARE_RATE_LIMIT_WINDOW_SECONDS": str(max(1, round(self.rate_window))),
            "CLOUDFLARE_RATE_LIMIT_PER_SECOND": str(self.per_second),
            **self.extra_env,
        }
        self._start_emulator()
        self.api_url = f"http://127.0.0.1:{port}"
        self._spawn("api", "api")
        _wait_http(self.api_url + "/readyz", 60)
        for i in range(self.reconcilers):
            self._spawn(f"reconciler-{i + 1}", "reconciler", FLAREPORT_HEALTH_PORT=str(free_port()))
        self._spawn("dns-worker", "dns-worker", FLAREPORT_HEALTH_PORT=str(free_port()))
        return self

    def _start_emulator(self) -> None:
        seed = self.workdir / "cloudflare-seed.json"
        seed.write_text(
            json.dumps(
                {
                    "accounts": [{"id": ACCOUNT_ID, "name": "bench"}],
                    "zones": [
                        {
                            "id": ZONE_ID,
                            "name": ZONE,
                            "account_id": ACCOUNT_ID,
                            "status": "active",
                            "created_on": OLD_ZONE_CREATED_ON,
                        }
                    ],
                }
            )
        )
        command = [
            sys.executable, "-m", "flareport_cfemu", "--port", "0", "--seed", str(seed), "--token", TOKEN,
            "--rate-limit", str(self.rate_limit), "--rate-window", str(self.rate_window),
            "--address-rate-limit", str(self.per_second),
        ]  # fmt: skip
        log = open(self.workdir / "cloudflare.err", "wb")  # noqa: SIM115 - open as long as the process
        self._logs.append(log)
        process = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, stderr=log)
        self.processes["cloudflare"] = process
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}; see {self.workdir / 'cloudflare.err'}")
        url = line.strip().rsplit(" ", 1)[-1]
        self.env["CLOUDFLARE_API_BASE_URL"] = url
        self.emulator_url = url.removesuffix("/client/v4")

    def _spawn(self, name: str, service: str, **extra: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - open as long as the process
        self._logs.append(log)
        command = [sys.executable, "-m", "flareport_cli", service]
        port = extra.get("FLAREPORT_HEALTH_PORT") or (self.env["FLAREPORT_API_PORT"] if service == "api" else None)
        if port:
            self.metrics_urls[name] = f"http://127.0.0.1:{port}/metrics"
        self._commands[name] = (service, extra)
        self.processes[name] = subprocess.Popen(command, env={**self.env, **extra}, stdout=log, stderr=log)

    def spawn(self, name: str, service: str, **extra: str) -> None:
        """One more process of the control plane (e.g. an agent), stopped with the stack."""
        self._spawn(name, service, **extra)

    def restart(self, names: list[str]) -> dict[str, float | None]:
        """Stop these processes (SIGTERM, as an orchestrator does), then start them again with the same settings;
        the API comes back on its port. Returns the CPU seconds each stopped process had used in all, read while
        it is a zombie (before it is reaped), once the API answers again (when it was restarted)."""
        final: dict[str, float | None] = {}
        for name in names:
            self.processes[name].terminate()
        for name in names:
            pid = self.processes[name].pid
            deadline = time.monotonic() + 30
            while not _exited(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            final[name] = cpu_seconds(pid)
            self.processes[name].wait(timeout=30)
        for name in names:
            service, extra = self._commands[name]
            self._spawn(name, service, **extra)
            if service == "api":
                _wait_http(self.api_url + "/readyz", 60)
        return final

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        if self.redis_server is not None:
            self.redis_server.stop()

    def __enter__(self) -> BenchStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ measurements
    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def rss(self) -> dict[str, float | None]:
        result = {name: rss_mb(p.pid) for name, p in self.processes.items()}
        process = getattr(self.redis_server, "_process", None)  # LocalRedis keeps its process private
        if process is not None:
            result["redis-server"] = rss_mb(process.pid)
        return result

    def redis(self) -> aioredis.Redis:
        assert self.redis_server is not None
        return aioredis.Redis.from_url(self.redis_server.url)

    async def idle(self, redis: aioredis.Redis) -> bool:
        """Every stream of the control plane delivered and acknowledged, and no target held for its coalescing
        window: nothing is being worked on, and nothing is about to be."""
        if await redis.zcard(self.keys.targets_waiting):
            return False
        streams = [(self.keys.events, GROUP_RECONCILER), (self.keys.intents, GROUP_RECONCILER)]
        streams += [(self.keys.cf_results, GROUP_RECONCILER), (self.keys.cf_jobs, GROUP_DNS_WORKER)]
        streams += [(self.keys.cf_jobs_zones, GROUP_DNS_WORKER)]
        for stream, group in streams:
            if not await redis.exists(stream):
                continue
            groups = {_text(g["name"]): g for g in await redis.xinfo_groups(stream)}
            info = groups.get(group)
            if info is None or int(info["pending"]) or int(info.get("lag") or 0):
                return False
        return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback URL
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.05)
