"""Fairness under a flood: one agent key floods the events stream; how long does another agent's single event take
to be processed by the reconciler, and is any accepted event lost?

Starts its own redis-server, one ``flareport api`` and one ``flareport reconciler`` process (default quotas unless
``--rate``/``--burst``/``--backlog`` say otherwise), registers ``--flooders`` attacker agents and one victim, then:
1. baseline: the victim alone sends one ``container_start`` (a new hostname) every ``--every`` seconds;
2. flood: each attacker posts batches of ``--batch`` tiny events (stops of one container, increasing seq) on
   ``--connections`` connections as fast as it is answered, ignoring ``Retry-After`` (a hostile agent), while the
   victim keeps sending its single events.
The victim's latency is from the API's 2xx to the container's inventory entry the reconciler writes (p50/p99/max).
At the end the flood stops, the reconciler drains the stream, and the bench counts events the API accepted (from its
answers) against events added to the stream (Redis' counter) and events the reconciler finished (its /metrics):
``lost`` is accepted minus finished. Usage: python bench/event_flood.py [--seconds 20] [--flooders 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.api_ingest

from bench.api_ingest import MASTER, PREFIX, make_agents

from flareport_cli.localredis import LocalRedis, free_port
from flareport_common.keys import GROUP_RECONCILER, Keys

KEYS = Keys(PREFIX)


def spawn(service: str, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{service}.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "flareport_cli", service], env=env, stdout=log, stderr=log)


async def wait_http(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(500):
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.02)
    raise SystemExit(f"bench: {url} never answered")


def ms_stats(values: list[float]) -> dict[str, Any]:
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return {"probes": 0}
    return {"probes": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1), "max_ms": round(ms[-1], 1)}  # fmt: skip


class Victim:
    """One agent sending a single new container now and then; measures until the reconciler recorded it."""

    def __init__(self, session: aiohttp.ClientSession, url: str, redis: aioredis.Redis, agent: Any) -> None:
        self.session, self.url, self.redis = session, url, redis
        self.agent_id, self.headers = agent
        self.seq = 0
        self.accepted = 0
        self.refused: Counter[str] = Counter()

    async def probe(self) -> float | None:
        self.seq += 1
        hostname = f"probe-{self.seq}.victim.example"
        container_id = f"{self.seq:064d}"
        container: dict[str, Any] = {"container_id": container_id, "name": f"probe-{self.seq}",
                     "rules": [{"hostname": hostname, "service": "http://probe:80"}]}  # fmt: skip
        body = {"events": [{"type": "container_start", "agent_id": "x", "seq": self.seq, "container": container}]}
        path = f"{self.url}/api/v1/agents/{self.agent_id}/events"
        while True:  # as the agent's outbox does: keep the event, wait out a 429, send it again
            async with self.session.post(path, json=body, headers=self.headers) as response:
                answer = await response.json()
                if response.status == 200:
                    break
                self.refused[answer["error"]["field"]] += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        self.accepted += int(answer["accepted"])
        answered = time.perf_counter()
        deadline = time.monotonic() + 120
        while not await self.redis.exists(KEYS.agent_container(self.agent_id, container_id)):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.005)
        return time.perf_counter() - answered

    async def run(self, seconds: float, every: float) -> tuple[list[float], int]:
        latencies, lost = [], 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            took = await self.probe()
            if took is None:
                lost += 1
            else:
                latencies.append(took)
            await asyncio.sleep(every)
        return latencies, lost


class Flooder:
    def __init__(self, session: aiohttp.ClientSession, url: str, agent: Any, batch: int) -> None:
        self.session, self.url, self.batch = session, url, batch
        self.agent_id, self.headers = agent
        self.seq = 0
        self.accepted = self.offered = 0
        self.statuses: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def connection(self) -> None:
        path = f"{self.url}/api/v1/agents/{self.agent_id}/events"
        while not self.stop.is_set():
            first, self.seq = self.seq + 1, self.seq + self.batch
            events = [{"type": "container_stop", "agent_id": "x", "seq": first + i, "container_id": "ghost"}
                      for i in range(self.batch)]  # fmt: skip
            async with self.session.post(path, json={"events": events}, headers=self.headers) as response:
                answer = await response.json()
            self.offered += self.batch
            if response.status == 200:
                self.accepted += int(answer["accepted"])
                self.statuses["200"] += 1
            else:
                self.statuses[f"{response.status} {answer['error'].get('field')}"] += 1


async def reconciler_finished(session: aiohttp.ClientSession, metrics_url: str) -> float:
    async with session.get(metrics_url) as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("flareport_stream_messages_total{") and 'stream="events"' in line)  # fmt: skip


async def drained(redis: aioredis.Redis) -> bool:
    for group in await redis.xinfo_groups(KEYS.events):
        if group["name"] in (GROUP_RECONCILER, GROUP_RECONCILER.encode()):
            return int(group["pending"]) == 0 and int(group.get("lag") or 0) == 0
    return False


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = LocalRedis(workdir / "redis")
        server.start()
        api_port, health_port = free_port(), free_port()
        env = {**os.environ, "REDIS_URL": server.url, "MASTER_API_KEY": MASTER, "FLAREPORT_API_HOST": "127.0.0.1",
               "FLAREPORT_API_PORT": str(api_port), "FLAREPORT_KEY_PREFIX": PREFIX, "LOG_LEVEL": "warning"}  # fmt: skip
        quotas = {"FLAREPORT_AGENT_EVENTS_PER_SECOND": args.rate, "FLAREPORT_AGENT_EVENTS_BURST": args.burst,
                  "FLAREPORT_EVENTS_BACKLOG_LIMIT": args.backlog}  # fmt: skip
        env.update({name: str(value) for name, value in quotas.items() if value is not None})
        processes = [spawn("api", env, workdir),
                     spawn("reconciler", {**env, "FLAREPORT_HEALTH_PORT": str(health_port)}, workdir)]  # fmt: skip
        redis = aioredis.Redis.from_url(server.url)
        url = f"http://127.0.0.1:{api_port}"
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
                await wait_http(session, url + "/readyz")
                await wait_http(session, f"http://127.0.0.1:{health_port}/metrics")
                agents = await make_agents(session, url, args.flooders + 1)
                victim = Victim(session, url, redis, agents[0])
                baseline, baseline_lost = await victim.run(args.baseline_seconds, args.every)
                flooders = [Flooder(session, url, agent, args.batch) for agent in agents[1:]]
                tasks = [asyncio.create_task(f.connection()) for f in flooders for _ in range(args.connections)]
                started = time.perf_counter()
                flooded, flooded_lost = await victim.run(args.seconds, args.every)
                elapsed = time.perf_counter() - started
                for flooder in flooders:
                    flooder.stop.set()
                await asyncio.gather(*tasks)
                deadline = time.monotonic() + 300
                while not await drained(redis):
                    if time.monotonic() > deadline:
                        raise SystemExit("bench: the reconciler did not drain the events stream")
                    await asyncio.sleep(0.1)
                accepted = len(agents) + victim.accepted + sum(f.accepted for f in flooders)  # + registrations
                added = int((await redis.xinfo_stream(KEYS.events))["entries-added"])
                finished = await reconciler_finished(session, f"http://127.0.0.1:{health_port}/metrics")
                statuses: Counter[str] = Counter()
                for flooder in flooders:
                    statuses.update(flooder.statuses)
                print(json.dumps({"phase": "baseline", **ms_stats(baseline), "unprocessed": baseline_lost}))
                print(json.dumps({
                    "phase": "flood", "flooders": args.flooders, "connections": args.connections, "batch": args.batch,
                    "seconds": round(elapsed, 1),
                    "flood_offered_per_s": round(sum(f.offered for f in flooders) / elapsed),
                    "flood_accepted_per_s": round(sum(f.accepted for f in flooders) / elapsed),
                    "flood_answers": dict(statuses), "victim": ms_stats(flooded), "victim_unprocessed": flooded_lost,
                    "victim_refused": dict(victim.refused), "accepted": accepted, "added": added,
                    "finished": int(finished), "lost": accepted - int(finished),
                }))  # fmt: skip
        finally:
            await redis.aclose()
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=20)
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the flood")
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=0.2, help="pause between the victim's events")
    parser.add_argument("--flooders", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4, help="concurrent requests per flooder")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, help="FLAREPORT_AGENT_EVENTS_PER_SECOND (default: the API's)")
    parser.add_argument("--burst", type=int, help="FLAREPORT_AGENT_EVENTS_BURST (default: the API's)")
    parser.add_argument("--backlog", type=int, help="FLAREPORT_EVENTS_BACKLOG_LIMIT (default: the API's)")
    asyncio.run(main(parser.parse_args()))
