"""API throughput: agent events accepted per second by one API process, and command long-poll delivery latency
with many agents waiting at once.

Starts its own redis-server and one ``flareport api`` process on free loopback ports, creates and registers the
agents through the API, then:
1. ingest: ``--writers`` agents post batches of ``--batch`` container events as fast as they are answered for
   ``--seconds``; prints events/s that reached the events stream (XLEN), and requests/s;
2. long-poll: ``--agents`` agents each keep a long-poll open (``wait=25``); the bench plays the reconciler
   (XADD a command to one agent's stream + PUBLISH its id) ``--commands`` times at ``--rate`` per second and
   measures the time from PUBLISH to the agent receiving the command; prints p50/p99/max.
Everything is loopback and bounded in time. Usage: python bench/api_ingest.py [--agents 1000] [--commands 500]
(events/s is counted from the answers' ``accepted``). The API runs every check of an accepted event (sequence numbers,
the agent's token bucket, the reconciler group's backlog) with limits high enough never to refuse, so the number is
the cost of the checks, not of refusals; bench/event_flood.py measures the refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis, free_port
from flareport_common.keys import GROUP_RECONCILER, Keys
from flareport_common.messages import StartTunnel
from flareport_common.streams.codec import encode

MASTER = "bench-master-key-0123456789abcdef"
PREFIX = "bench:"


async def start_api(redis_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "MASTER_API_KEY": MASTER, "FLAREPORT_API_HOST": "127.0.0.1",
           "FLAREPORT_API_PORT": str(port), "FLAREPORT_KEY_PREFIX": PREFIX, "LOG_LEVEL": "warning",
           "FLAREPORT_AGENT_EVENTS_PER_SECOND": "1e9", "FLAREPORT_AGENT_EVENTS_BURST": "1000000000",
           "FLAREPORT_EVENTS_BACKLOG_LIMIT": "1000000000"}  # fmt: skip
    log = open(workdir / "api.log", "wb")  # noqa: SIM115, ASYNC230 - lives as long as the process
    command = [sys.executable, "-m", "flareport_cli", "api"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)  # noqa: ASYNC220 - started once, not awaited
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return process, url
            await asyncio.sleep(0.02)
    process.kill()
    raise SystemExit(f"api did not start; see {workdir / 'api.log'}")


async def make_agents(session: aiohttp.ClientSession, url: str, count: int) -> list[tuple[str, dict[str, str]]]:
    admin = {"Authorization": f"Bearer {MASTER}"}
    semaphore = asyncio.Semaphore(50)

    async def one(i: int) -> tuple[str, dict[str, str]]:
        async with semaphore:
            async with session.post(url + "/api/v1/keys", json={"label": f"bench-{i}"}, headers=admin) as response:
                key = (await response.json())["key"]
            headers = {"Authorization": f"Bearer {key}"}
            body = {"display_name": f"bench {i}"}
            async with session.post(url + "/api/v1/agents/register", json=body, headers=headers) as response:
                return (await response.json())["agent_id"], headers

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def ingest(session: aiohttp.ClientSession, url: str, agents: Any, args: Any) -> None:
    deadline = time.monotonic() + args.seconds
    requests = accepted = 0

    async def writer(agent_id: str, headers: dict[str, str]) -> None:
        nonlocal requests, accepted
        seq = 0
        while time.monotonic() < deadline:
            events = []
            for _ in range(args.batch):
                seq += 1
                events.append({"type": "container_stop", "agent_id": agent_id, "seq": seq, "container_id": f"c{seq}"})
            path = f"/api/v1/agents/{agent_id}/events"
            async with session.post(url + path, json={"events": events}, headers=headers) as response:
                assert response.status == 200, await response.text()
                accepted += (await response.json())["accepted"]
            requests += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(a, h) for a, h in agents[: args.writers]))
    elapsed = time.perf_counter() - started
    # Counted from the answers (each one after its XADDs).
    print(json.dumps({"phase": "ingest", "writers": args.writers, "batch": args.batch, "seconds": round(elapsed, 2),
                      "events": accepted, "events_per_s": round(accepted / elapsed),
                      "requests_per_s": round(requests / elapsed)}))  # fmt: skip


async def long_poll(session: aiohttp.ClientSession, url: str, redis: aioredis.Redis, agents: Any, args: Any) -> None:
    keys = Keys(PREFIX)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def agent_loop(agent_id: str, headers: dict[str, str]) -> None:
        path = f"/api/v1/agents/{agent_id}/commands"
        while not done.is_set():
            async with session.get(url + path, params={"wait": "25"}, headers=headers) as response:
                batch = await response.json()
            for envelope in batch.get("commands", ()):
                received = time.perf_counter()
                token = envelope["command"]["token"]
                if token in sent:
                    latencies.append(received - sent.pop(token))
                ack = f"{path}/{envelope['command_id']}/ack"
                async with session.post(url + ack, json={"ok": True}, headers=headers) as response:
                    await response.read()
            if len(latencies) >= args.commands:
                done.set()

    pollers = [asyncio.create_task(agent_loop(a, h)) for a, h in agents]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until every agent is parked in a long-poll
        async with session.get(url + "/metrics") as response:
            text = await response.text()
        line = next((x for x in text.splitlines() if x.startswith("flareport_api_longpolls_open ")), "0 0")
        if float(line.split()[1]) >= len(agents):
            break
        await asyncio.sleep(0.1)
    for i in range(args.commands):
        agent_id = random.choice(agents)[0]
        token = f"tok-{i}"
        await redis.xadd(keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id="t", token=token)))  # type: ignore[arg-type]
        sent[token] = time.perf_counter()
        await redis.publish(keys.command_notifications, agent_id)
        await asyncio.sleep(1 / args.rate)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=30)
    done.set()
    for task in pollers:
        task.cancel()
    await asyncio.gather(*pollers, return_exceptions=True)
    ms = sorted(x * 1000 for x in latencies)
    print(json.dumps({
        "phase": "long_poll", "agents": len(agents), "commands": args.commands, "delivered": len(ms),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2) if ms else None,
        "max_ms": round(ms[-1], 2) if ms else None,
    }))  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp) / "redis")
        server.start()
        process, url = await start_api(server.url, Path(tmp))
        redis = aioredis.Redis.from_url(server.url)
        try:
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                agents = await make_agents(session, url, args.agents)
                # The reconciler's group exists (and reads nothing here): each batch's backlog check reads it.
                await redis.xgroup_create(Keys(PREFIX).events, GROUP_RECONCILER, id="$", mkstream=True)
                await ingest(session, url, agents, args)
                await long_poll(session, url, redis, agents, args)
        finally:
            await redis.aclose()
            process.terminate()
            process.wait(timeout=20)
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    asyncio.run(main(parser.parse_args()))
