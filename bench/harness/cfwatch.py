"""What the Cloudflare emulator saw: call counters, the request log, and when each hostname became published.

Convergence of a hostname = its proxied CNAME is in the zone *and* its ingress rule is in its tunnel's
configuration. ``Watcher`` polls the emulator's state (a control endpoint: not rate-limited, not counted, not
slowed by faults) and, when a hostname first shows, takes the time of the write from the state itself: the
record's ``created_on`` (exact) and the configuration's ``created_at`` (the PUT that made the current version:
exact when one PUT landed since the previous poll, an upper bound otherwise). Polls are spaced to at least three
times their own duration, so watching never takes more than a quarter of the emulator's time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

WRITES = ("POST", "PUT", "PATCH", "DELETE")


async def control(session: aiohttp.ClientSession, url: str, method: str = "GET", body: Any = None) -> Any:
    async with session.request(method, url, json=body) as response:
        response.raise_for_status()
        answer = await response.json()
    return answer.get("result", answer) if isinstance(answer, dict) else answer


async def set_latency(session: aiohttp.ClientSession, emulator: str, latency_ms: float) -> None:
    if latency_ms:
        await control(session, emulator + "/__emulator/faults?replace=true", "POST",
                      [{"endpoint": "*", "latency_ms": latency_ms}])  # fmt: skip
    else:
        await control(session, emulator + "/__emulator/faults", "DELETE")


async def counters(session: aiohttp.ClientSession, emulator: str) -> dict[str, Any]:
    return dict(await control(session, emulator + "/__emulator/requests?limit=0"))


def summarise(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Calls between two ``counters`` snapshots: total, writes, reads and 429 answers."""
    diff = {k: v - before["counters"].get(k, 0) for k, v in after["counters"].items()}
    limited = sum(
        v - before["status_counters"].get(k, 0) for k, v in after["status_counters"].items() if k.endswith(" 429")
    )
    writes = sum(v for k, v in diff.items() if k.split(" ", 1)[0] in WRITES)
    total = sum(diff.values())
    return {"calls": total, "writes": writes, "reads": total - writes, "http_429": limited}


def published(state: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]]]:
    """(CNAME names, (tunnel id, ingress hostname) pairs) held by the emulator."""
    names = {r["name"] for zone in state["dns_records"].values() for r in zone.values() if r["type"] == "CNAME"}
    rules = set()
    for tunnel_id, entry in state.get("tunnel_configs", {}).items():
        for rule in ((entry or {}).get("config") or {}).get("ingress") or ():
            if rule.get("hostname"):
                rules.add((tunnel_id, rule["hostname"]))
    return names, rules


def epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class Watcher:
    def __init__(self, session: aiohttp.ClientSession, emulator: str, interval: float = 0.02) -> None:
        self.session = session
        self.emulator = emulator
        self.interval = interval
        self.started: dict[str, tuple[float, str]] = {}  # hostname -> (wall time of the start event, tunnel id)
        self.dns_seen: dict[str, float] = {}  # hostname -> when the write that published it completed
        self.ingress_seen: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def expect(self, hostname: str, tunnel_id: str, at: float) -> None:
        self.started[hostname] = (at, tunnel_id)

    def pending(self) -> int:
        return sum(1 for h in self.started if h not in self.dns_seen or h not in self.ingress_seen)

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            state = await control(self.session, self.emulator + "/__emulator/state")
            records = {
                r["name"]: r["created_on"]
                for zone in state["dns_records"].values()
                for r in zone.values()
                if r["type"] == "CNAME"
            }
            configs = state.get("tunnel_configs", {})
            for host, (_, tunnel_id) in self.started.items():
                if host not in self.dns_seen and host in records:
                    self.dns_seen[host] = epoch(records[host])
                if host not in self.ingress_seen and tunnel_id in configs:
                    entry = configs[tunnel_id] or {}
                    hosts = {r.get("hostname") for r in (entry.get("config") or {}).get("ingress") or ()}
                    if host in hosts:
                        self.ingress_seen[host] = epoch(entry["created_at"])
            self._changed.set()
            await asyncio.sleep(max(self.interval, 3 * (time.monotonic() - began)))

    async def wait(self, hostnames: list[str], within: float) -> bool:
        deadline = time.monotonic() + within
        while not all(h in self.dns_seen and h in self.ingress_seen for h in hostnames):
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return False
        return True

    def latencies(self, hostnames: list[str]) -> list[float]:
        """Seconds from each start event to its hostname's last needed write (converged hostnames only)."""
        return [
            max(self.dns_seen[h], self.ingress_seen[h]) - self.started[h][0]
            for h in hostnames
            if h in self.dns_seen and h in self.ingress_seen
        ]
