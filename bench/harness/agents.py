"""Simulated agents: the agent protocol (``flareport_common.protocol``) over real HTTP, without an engine.

A ``SimAgent`` gets a key from the admin API, registers, is enrolled (which makes the reconciler ensure its
tunnel), long-polls its commands and acknowledges them (``start_tunnel`` tells it its tunnel id), and posts event
batches with its own sequence numbers: ``inventory`` snapshots as an agent sends when it starts, and
``container_start`` events as the engine's start events become. Bodies are the JSON of the protocol's structs,
checked by the API exactly as a real agent's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import aiohttp

from .stack import MASTER, ZONE

ADMIN = {"Authorization": f"Bearer {MASTER}"}
HEARTBEAT_SECONDS = 15.0  # the interval the API tells agents (RegisterResponse.heartbeat_interval_seconds)


def container(agent: int, n: int, *, service: str = "http://web:80", access: bool = False) -> dict[str, Any]:
    rule: dict[str, Any] = {"hostname": hostname(agent, n), "service": service}
    if access:
        rule["access"] = {"policy": "authenticate"}
    return {"container_id": f"{agent:08x}{n:056x}", "name": f"web-{agent}-{n}", "rules": [rule]}


def hostname(agent: int, n: int) -> str:
    return f"a{agent}-c{n}.{ZONE}"


class SimAgent:
    # The API's 429s the simulated fleet waited out, by request path kind: a run slowed by the API's own
    # protection (an agent's rate, a deep backlog) says so in its report.
    refusals: Counter[str] = Counter()

    def __init__(self, session: aiohttp.ClientSession, api_url: str, index: int) -> None:
        self.session = session
        self.api_url = api_url
        self.index = index
        self.agent_id = ""
        self.headers: dict[str, str] = {}
        self.seq = 0
        self.tunnel_id: str | None = None
        self.has_tunnel = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._beating: asyncio.Task[None] | None = None  # the heartbeats' task, one of ``_tasks``
        # One request at a time, in the order the events were numbered, as a real agent's outbox sends: two
        # requests in flight could arrive out of order, and the later-numbered one would make the other stale.
        self._sending = asyncio.Lock()

    async def _json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        for attempt in range(20):
            async with self.session.request(
                method, self.api_url + path, json=body, headers=headers or self.headers
            ) as response:
                if response.status == 429 and attempt < 19:  # the API's own protection: back off as an agent does
                    SimAgent.refusals[path.split("?")[0].rsplit("/", 1)[-1]] += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status >= 300:
                    raise RuntimeError(f"{method} {path} -> {response.status} {await response.text()}")
                return await response.json()
        raise RuntimeError("unreachable")

    async def provision(self) -> None:
        """The admin creates the agent's key (an operator does that before the host boots)."""
        created = await self._json("POST", "/api/v1/keys", {"label": f"bench-{self.index}"}, ADMIN)
        self.headers = {"Authorization": f"Bearer {created['key']}"}

    async def register(self) -> None:
        if not self.headers:
            await self.provision()
        answer = await self._json("POST", "/api/v1/agents/register", {"display_name": f"bench {self.index}"})
        self.agent_id = answer["agent_id"]
        self.seq = int(answer.get("last_seq") or 0)

    async def register_again(self) -> None:
        """What a restarted agent does: register with its key; it continues from the sequence number it is told."""
        answer = await self._json("POST", "/api/v1/agents/register", {"display_name": f"bench {self.index}"})
        self.seq = max(self.seq, int(answer.get("last_seq") or 0))

    async def enroll(self) -> None:
        body = {"tunnel_name": f"bench-{self.index}"}
        await self._json("POST", f"/api/v1/agents/{self.agent_id}/enroll", body, ADMIN)

    def start_polling(self) -> None:
        """Long-poll commands and send heartbeats, as a running agent does (one without heartbeats goes offline)."""
        self._beating = asyncio.create_task(self._heartbeats())
        self._tasks = [asyncio.create_task(self._poll()), self._beating]

    async def _heartbeats(self) -> None:
        path = f"/api/v1/agents/{self.agent_id}/heartbeat"
        body = {"tunnel": {"container_state": "running"}}
        if self.tunnel_id is None:
            # As a real agent without a tunnel does: its registration said all a first beat would.
            await asyncio.sleep(HEARTBEAT_SECONDS)
        while True:
            with contextlib.suppress(aiohttp.ClientError, RuntimeError, TimeoutError):
                await self._json("POST", path, body)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _poll(self) -> None:
        path = f"/api/v1/agents/{self.agent_id}/commands"
        while True:
            try:
                batch = await self._json("GET", path + "?wait=20")
            except (aiohttp.ClientError, RuntimeError, TimeoutError):
                await asyncio.sleep(0.5)
                continue
            for envelope in batch.get("commands", ()):
                command = envelope["command"]
                if command.get("type") == "start_tunnel":
                    self.tunnel_id = command["tunnel_id"]
                    self.has_tunnel.set()
                with contextlib.suppress(aiohttp.ClientError, RuntimeError):
                    await self._json("POST", f"{path}/{envelope['command_id']}/ack", {"ok": True})

    async def stop_heartbeats(self) -> None:
        """Keep polling but stop the heartbeats (the agent goes offline after the API's grace, not at once)."""
        beating, self._beating = self._beating, None
        if beating is None:
            return
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        self._tasks.remove(beating)

    async def stop_polling(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    async def send(self, events: list[dict[str, Any]]) -> None:
        async with self._sending:  # FIFO: tasks created in seq order acquire it in that order
            answer = await self._json("POST", f"/api/v1/agents/{self.agent_id}/events", {"events": events})
        if answer["accepted"] != len(events):
            raise RuntimeError(f"agent {self.index}: {answer['accepted']} of {len(events)} events accepted")

    def start_event(self, info: dict[str, Any]) -> dict[str, Any]:
        # The agent's receipt of the engine's event is now: the trace's first stage (flareport_common.tracing).
        trace = {"agent_us": time.time_ns() // 1000}
        return {"type": "container_start", "agent_id": self.agent_id, "seq": self._next(), "container": info,
                "trace": trace}  # fmt: skip

    def inventory_event(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "inventory", "agent_id": self.agent_id, "seq": self._next(), "containers": infos}


async def make_agents(
    session: aiohttp.ClientSession, api_url: str, count: int, *, first: int = 0, concurrency: int = 50
) -> list[SimAgent]:
    """Register, enrol and start polling ``count`` agents; returns once every one has its tunnel."""
    agents = [SimAgent(session, api_url, first + i) for i in range(count)]
    semaphore = asyncio.Semaphore(concurrency)

    async def one(agent: SimAgent) -> None:
        async with semaphore:
            await agent.register()
            agent.start_polling()
            await agent.enroll()

    await asyncio.gather(*(one(a) for a in agents))
    return agents


async def wait_tunnels(agents: list[SimAgent], within: float) -> None:
    await asyncio.wait_for(asyncio.gather(*(a.has_tunnel.wait() for a in agents)), within)
