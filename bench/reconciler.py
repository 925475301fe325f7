"""Reconciler throughput at 20,000 hostnames, handled by real ``flareport reconciler`` processes.

Starts its own redis-server and N reconciler processes, enrols the agents, then:
1. every agent sends its full inventory (one ``inventory`` snapshot per agent, 20,000 hostnames in all), as agents
   do when they start — the way a fleet comes up;
2. a burst of single ``container_start`` events from 20 agents (containers restarted with a new service).
A stand-in dns-worker answers jobs in rounds (every ``--worker-period`` seconds, like a worker whose Cloudflare
calls take that long). Prints events/s and hostnames/s processed (until the events stream is drained), Cloudflare
jobs emitted per 1,000 events (counted once everything the burst caused was emitted and answered), the
reconcilers' resident memory and Redis' memory at 20,000 hostnames.
Usage: python bench/reconciler.py [--agents 200] [--per-agent 100] [--updates 2000] [--replicas 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import GROUP_DNS_WORKER, Keys
from flareport_common.messages import AgentEnrolled, ContainerInfo, ContainerStart, Inventory, Rule
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, all_drained, drained

ZONES = 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# The stand-in worker's activity: "busy" while it holds pulled jobs not answered yet, and how many rounds answered.
ACTIVITY = {"busy": 0, "rounds": 0}


async def answer_forever(worker: FakeDnsWorker, stop: asyncio.Event, period: float) -> None:
    while not stop.is_set():
        ACTIVITY["busy"] = 1
        try:
            jobs = await worker.pull()
            if jobs:
                await worker.answer(jobs)
                ACTIVITY["rounds"] += 1
        finally:
            ACTIVITY["busy"] = 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period)


async def quiet(redis: aioredis.Redis, keys: Keys) -> bool:
    """Everything caused so far was emitted and answered: the reconciler's streams are drained and the worker has
    pulled and answered every job (a result can make a pending target plan again, hence the whole chain)."""
    rounds = ACTIVITY["rounds"]
    idle = not ACTIVITY["busy"] and await all_drained(redis, keys)
    idle = idle and await drained(redis, keys.cf_jobs, GROUP_DNS_WORKER)
    idle = idle and await drained(redis, keys.cf_jobs_zones, GROUP_DNS_WORKER)
    return idle and not ACTIVITY["busy"] and ACTIVITY["rounds"] == rounds


async def wait(condition: object, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not await condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        await asyncio.sleep(0.02)


def info(agent: int, n: int, service: str) -> ContainerInfo:
    return ContainerInfo(
        container_id=f"{agent:04d}{n:060d}",
        name=f"web-{agent}-{n}",
        rules=(Rule(hostname=f"app-{agent}-{n}.zone{(agent + n) % ZONES}.example", service=service),),
    )


def snapshots(agents: int, per_agent: int) -> list[Inventory]:
    return [
        Inventory(agent_id=f"agent-{a}", seq=1, containers=tuple(info(a, n, "http://web:80") for n in range(per_agent)))
        for a in range(agents)
    ]


def starts(agents: int, count: int, seq: int) -> list[ContainerStart]:
    return [
        ContainerStart(
            agent_id=f"agent-{i % agents}",
            seq=seq + i // agents,
            container=info(i % agents, i // agents, "http://web:8080"),
        )
        for i in range(count)
    ]


async def burst(
    redis: aioredis.Redis,
    keys: Keys,
    worker: FakeDnsWorker,
    events: list[Inventory] | list[ContainerStart],
    hostnames: int,
) -> dict[str, float]:
    before = len(worker.jobs)
    producer = Producer(redis)
    started = time.perf_counter()
    for chunk in range(0, len(events), 1000):
        await producer.send_many(keys.events, events[chunk : chunk + 1000])
    await wait(lambda: drained(redis, keys.events), limit=300)
    seconds = time.perf_counter() - started

    await wait(lambda: quiet(redis, keys), limit=120)
    jobs = len(worker.jobs) - before
    return {
        "events": len(events),
        "seconds": round(seconds, 2),
        "events_per_s": round(len(events) / seconds),
        "hostnames_per_s": round(hostnames / seconds),
        "jobs": jobs,
        "jobs_per_1000_events": round(jobs * 1000 / len(events), 1),
    }


def spawn(url: str, prefix: str, replicas: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "REDIS_URL": url,
        "FLAREPORT_KEY_PREFIX": prefix,
        "FLAREPORT_HEALTH_PORT": "0",
        "LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "flareport_cli.main", "reconciler"]
    return [subprocess.Popen(command, env=env) for _ in range(replicas)]


async def measure(url: str, prefix: str, pids: list[int], args: argparse.Namespace) -> dict[str, object]:
    agents, per_agent = args.agents, args.per_agent
    keys = Keys(prefix)
    redis = aioredis.Redis.from_url(url)
    worker = FakeDnsWorker(redis, keys)
    stop = asyncio.Event()
    answering = asyncio.create_task(answer_forever(worker, stop, args.worker_period))
    try:
        await Producer(redis).send_many(keys.intents, [AgentEnrolled(agent_id=f"agent-{a}") for a in range(agents)])
        await wait(lambda: quiet(redis, keys), limit=60)
        first = await burst(redis, keys, worker, snapshots(agents, per_agent), agents * per_agent)
        rss = [rss_mb(pid) for pid in pids]
        used = (await redis.info("memory"))["used_memory"]
        updates = starts(min(agents, args.update_agents), args.updates, 2)
        changes = await burst(redis, keys, worker, updates, args.updates)
    finally:
        stop.set()
        await answering
        await redis.aclose()
    return {
        "hostnames": agents * per_agent,
        "agents": agents,
        "replicas": len(pids),
        "worker_period_s": args.worker_period,
        "snapshots": first,
        "container_starts": changes,
        "reconciler_rss_mb": rss,
        "redis_used_memory_mb": round(used / 1024 / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--per-agent", type=int, default=100)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--update-agents", type=int, default=20, help="agents the container_start burst comes from")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--worker-period", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = LocalRedis(Path(workdir))
        server.start()
        try:
            processes = spawn(server.url, "bench:", args.replicas)
            try:
                result = asyncio.run(measure(server.url, "bench:", [p.pid for p in processes], args))
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=30)
        finally:
            server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
