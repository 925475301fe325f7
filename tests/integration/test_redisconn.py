"""The shared Redis pool makes callers wait for a free connection instead of failing a burst."""

from __future__ import annotations

import asyncio

from flareport_cli.localredis import LocalRedis
from flareport_common.redisconn import connect
from flareport_common.settings import load_reconciler


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(redis_server: LocalRedis, prefix: str) -> None:
    settings = load_reconciler({"REDIS_URL": redis_server.url}).common
    client = connect(settings, max_connections=4)
    try:
        # 40 concurrent blocking calls on 4 connections: each holds its connection for 50 ms.
        results = await asyncio.gather(*(client.blpop([f"{prefix}empty-{i}"], timeout=0.05) for i in range(40)))
        assert results == [None] * 40
    finally:
        await client.aclose()
