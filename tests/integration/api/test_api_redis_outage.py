"""Losing Redis: the API answers 503 with a JSON error (never crashes), /readyz says so, and it recovers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_cli.localredis import LocalRedis
from fptest.api_helpers import MASTER
from fptest.waiting import wait_for

from .conftest import make_settings


async def test_redis_outage_gives_503_and_the_api_recovers(redis_factory: Callable[..., LocalRedis]) -> None:
    server = redis_factory()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(make_settings(server.url, "outage:"))))
    await client.start_server()
    admin = {"Authorization": f"Bearer {MASTER}"}
    try:
        assert (await client.get("/readyz")).status == 200
        server.stop(kill=True)
        down = await client.get("/readyz")
        assert (down.status, (await down.json())["error"]["code"]) == (503, "redis_unavailable")
        keys = await client.get("/api/v1/keys", headers=admin)
        assert (keys.status, (await keys.json())["error"]["code"]) == (503, "redis_unavailable")
        server.restart()

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        await wait_for(ready, timeout=20, what="the API to reach Redis again")
        assert (await client.post("/api/v1/keys", json={"label": "x"}, headers=admin)).status == 201
    finally:
        await client.close()


async def test_reads_right_after_a_redis_restart_answer_without_503(redis_factory: Callable[..., LocalRedis]) -> None:
    server = redis_factory()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(make_settings(server.url, "restart:"))))
    await client.start_server()
    admin = {"Authorization": f"Bearer {MASTER}"}

    async def read_keys_at_once() -> list[int]:
        answers = await asyncio.gather(*(client.get("/api/v1/keys", headers=admin) for _ in range(8)))
        return [answer.status for answer in answers]

    try:
        assert await read_keys_at_once() == [200] * 8  # the pool now holds several connections, idle afterwards
        server.restart()  # same port, ready again: every one of those connections was closed by the server
        assert await read_keys_at_once() == [200] * 8, "a read met a dead pooled connection and was not repeated"
        # A write is not repeated (whether it reached Redis is unknown): it may answer 503 once, never 500.
        server.restart()
        created = await client.post("/api/v1/keys", json={"label": "x"}, headers=admin)
        assert created.status in (201, 503)
    finally:
        await client.close()
