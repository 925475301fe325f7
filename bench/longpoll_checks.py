"""What the long-poll's security checks cost per poll, against a real redis-server on loopback.

Every command poll now takes a slot of its agent's long-poll quota (one Lua call), gives it back (one ZREM) and reads
its key's record again before answering (one HGETALL). Printed per poll, each on its own, and then the rate of
whole ``GET /commands?wait=0`` requests through the API in-process (aiohttp test server) with the checks included.

Usage: python bench/longpoll_checks.py [--polls 5000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_api.keyproof import KeyMinter
from flareport_api.keystore import KeyStore
from flareport_api.longpoll import CommandHub
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.settings import AgentQuotas, ApiSettings, CommonSettings

MASTER = "bench-master-key-0123456789abcdef"


async def per_call(polls: int, redis: aioredis.Redis, keys: Keys) -> tuple[float, float, float]:
    store = KeyStore(redis, keys, KeyMinter("bench-secret-0123456789abcdef0123456789"))
    hub = CommandHub(redis, keys, poll_s=2.0, redeliver_s=60.0)
    _, stored = await store.create("bench", agent_id="agt_bench")
    start = time.perf_counter()
    for _ in range(polls):
        await redis.ping()
    ping = (time.perf_counter() - start) / polls
    start = time.perf_counter()
    for _ in range(polls):
        slot, _ = await hub.acquire("agt_bench", 25.0, 2)
        assert slot is not None
        await hub.release("agt_bench", slot)
    slots = (time.perf_counter() - start) / polls
    start = time.perf_counter()
    for _ in range(polls):
        await store.current(stored)
    recheck = (time.perf_counter() - start) / polls
    return ping, slots, recheck


async def whole_polls(polls: int, concurrency: int, url: str, prefix: str) -> float:
    common = CommonSettings(
        redis_url=url, redis_db_index=None, key_prefix=prefix, log_level="warning", log_format="json", tz=None
    )
    settings = ApiSettings(common=common, host="127.0.0.1", port=0, master_api_key=MASTER, max_body_bytes=65536)
    # One agent per concurrent client, each within its quota: the bench measures cost, not refusals.
    settings = replace(settings, quotas=AgentQuotas(longpolls=2))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    admin = {"Authorization": f"Bearer {MASTER}"}
    try:
        agents = []
        for n in range(concurrency):
            key = (await (await client.post("/api/v1/keys", json={"label": f"h{n}"}, headers=admin)).json())["key"]
            headers = {"Authorization": f"Bearer {key}"}
            registered = await client.post("/api/v1/agents/register", json={"display_name": f"h{n}"}, headers=headers)
            agents.append((f"/api/v1/agents/{(await registered.json())['agent_id']}/commands", headers))

        async def run(path: str, headers: dict[str, str], count: int) -> None:
            for _ in range(count):
                response = await client.get(path, params={"wait": "0"}, headers=headers)
                assert response.status == 200, await response.text()
                await response.read()

        each = polls // concurrency
        start = time.perf_counter()
        await asyncio.gather(*(run(path, headers, each) for path, headers in agents))
        return each * concurrency / (time.perf_counter() - start)
    finally:
        await client.close()


async def main(polls: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalRedis(Path(tmp))
        local.start()
        redis = aioredis.Redis.from_url(local.url)
        try:
            ping, slots, recheck = await per_call(polls, redis, Keys("bench:"))
            rate = await whole_polls(polls, concurrency, local.url, "bench-api:")
        finally:
            await redis.aclose()
            local.stop()
    print(f"one Redis round trip (PING):    {ping * 1e6:8.1f} us (for scale)")
    print(f"slot take + give back per poll: {slots * 1e6:8.1f} us (2 round trips)")
    print(f"key re-check per poll:          {recheck * 1e6:8.1f} us (1 round trip)")
    print(f"whole polls (wait=0), {concurrency} agents at once: {rate:8.0f} polls/s per API process")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.polls, args.concurrency))
