"""Clients made by ``flareport_common.redisconn`` against a real primary, replica and three Sentinels: they find the
master through the Sentinels, follow it through a failover without being recreated, readiness says "not ready"
while the master is being replaced, and a stream consumer keeps consuming across the failover.

One set of processes serves the module; before killing the primary a test starts an earlier test's victim again
(Sentinel makes a returning old primary a replica of the new one) and waits until the Sentinels count it healthy.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from flareport_api.app import create_app
from flareport_cli.localsentinel import LocalSentinelSet, Node
from flareport_common.redisconn import WAIT_SHORTFALLS, SentinelRedis, connect, ready, replicated
from flareport_common.settings import load_api, load_reconciler
from flareport_common.streams import Delivery, Producer, StreamConsumer
from fptest.messages import Work
from fptest.waiting import wait_for

from .test_stream_runtime import make_config, running

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinelSet]:
    # Two replicas: after a failover one is left for the next test without waiting for the old primary's return.
    nodes = LocalSentinelSet(Path(tmp_path_factory.mktemp("sentinel")), replicas=2)
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@pytest.fixture
async def client(sentinels: LocalSentinelSet) -> AsyncIterator[aioredis.Redis]:
    redis = connect(load_reconciler(sentinels.env).common, max_connections=16)
    yield redis
    await redis.aclose()


async def _fail_over(sentinels: LocalSentinelSet) -> tuple[Node, Node]:
    """Make sure a healthy replica is there (an earlier test killed a node), kill the primary, wait for the
    Sentinels to promote the replica; (old, new)."""
    await asyncio.to_thread(sentinels.heal, replicas=1)
    old = await asyncio.to_thread(sentinels.kill_master)
    new = await asyncio.to_thread(sentinels.wait_failover, old.port)
    return old, new


async def _retrying_set(redis: aioredis.Redis, key: str, value: str) -> None:
    """What every service loop does on a connection error: back off and try again."""

    async def attempt() -> bool:
        try:
            return bool(await redis.set(key, value))
        except RedisConnectionError:
            return False

    await wait_for(attempt, timeout=30, interval=0.1, what=f"SET {key} accepted again")


async def test_the_client_follows_the_master_through_a_failover_and_readiness_shows_it(
    sentinels: LocalSentinelSet, client: aioredis.Redis, prefix: str
) -> None:
    assert isinstance(client, SentinelRedis), "with REDIS_SENTINELS set the client should be Sentinel-managed"
    await asyncio.to_thread(sentinels.heal, replicas=1)
    assert await ready(client), "a healthy Sentinel set should be ready"
    await client.set(f"{prefix}before", "1")
    # What must survive a failover is written with WAIT (the replica holds it before the primary dies).
    assert await client.wait(1, 2000) >= 1

    async def not_ready() -> bool:
        try:
            return not await ready(client)
        except RedisConnectionError:
            return True

    # The API's /readyz answers from the same check (unauthenticated, so only up or down).
    settings = load_api({**sentinels.env, "MASTER_API_KEY": "sentinel-test-master-key", "FLAREPORT_KEY_PREFIX": prefix})
    async with TestClient(TestServer(create_app(settings))) as api:
        assert (await api.get("/readyz")).status == 200

        async def api_status() -> int:
            return (await api.get("/readyz")).status

        old = await asyncio.to_thread(sentinels.kill_master)
        # Both watched at once: the window between the master's loss being noticed and the promotion is short.
        await asyncio.gather(
            wait_for(not_ready, timeout=20, interval=0.05, what="readiness down while the master is replaced"),
            wait_for(lambda: _is(api_status(), 503), timeout=20, interval=0.05, what="the API's /readyz 503"),
        )
        new = await asyncio.to_thread(sentinels.wait_failover, old.port)
        await _retrying_set(client, f"{prefix}after", "2")
        assert await client.get(f"{prefix}before") == b"1", "a write the replica acknowledged should survive"
        with sentinels.client(new) as primary:
            assert primary.get(f"{prefix}after") == b"2", "the same client should now write to the new primary"
        await wait_for(lambda: ready(client), timeout=30, interval=0.1, what="readiness back on the new master")
        await wait_for(lambda: _is(api_status(), 200), timeout=30, interval=0.1, what="the API's /readyz back")


async def _is(status: Awaitable[int], wanted: int) -> bool:
    return await status == wanted


async def test_a_stream_consumer_keeps_consuming_across_a_failover(
    sentinels: LocalSentinelSet, client: aioredis.Redis, prefix: str
) -> None:
    config = make_config(prefix)
    seen: set[int] = set()

    async def handle(message: Work, delivery: Delivery) -> None:
        seen.add(message.n)

    producer = Producer(client)
    runtime = StreamConsumer(client, config, Work, handle)
    async with running(runtime):
        await producer.send_many(config.stream, [Work(n=i) for i in range(20)])
        await wait_for(lambda: _done(seen, 20), timeout=20, what="the first 20 messages handled")
        await client.wait(1, 2000)
        await _fail_over(sentinels)
        for n in range(20, 40):
            await _retrying_send(producer, config.stream, Work(n=n))
        await wait_for(lambda: _done(seen, 40), timeout=30, what="messages sent after the failover handled")
    assert seen == set(range(40)), "no message should be lost or left unhandled"


async def _done(seen: set[int], count: int) -> bool:
    return len(seen) >= count


async def _retrying_send(producer: Producer, stream: str, message: Work) -> None:
    async def attempt() -> bool:
        try:
            return bool(await producer.send(stream, message))
        except RedisConnectionError:
            return False

    await wait_for(attempt, timeout=30, interval=0.1, what="XADD accepted again")


async def test_a_write_that_must_not_be_lost_is_on_the_replica_when_replicated_returns(
    sentinels: LocalSentinelSet, client: aioredis.Redis, prefix: str
) -> None:
    await asyncio.to_thread(sentinels.heal, replicas=1)
    nodes = load_reconciler(sentinels.env).common.redis_nodes
    await client.set(f"{prefix}durable", "yes")
    assert await replicated(client, nodes, f"{prefix}replicated", what="test"), "one replica should acknowledge"
    acknowledged = [n for n in sentinels.replicas_online() if _holds(sentinels, n, f"{prefix}durable")]
    assert acknowledged, "a replica should hold the write once WAIT returned"

    # More replicas wanted than exist: the write stands, the shortfall is counted after the timeout.
    greedy = dataclasses.replace(nodes, wait_replicas=len(sentinels.data), wait_timeout_ms=100)
    before = WAIT_SHORTFALLS.labels("test")._value.get()
    assert not await replicated(client, greedy, f"{prefix}replicated", what="test")
    assert WAIT_SHORTFALLS.labels("test")._value.get() == before + 1
    assert await client.get(f"{prefix}durable") == b"yes"


def _holds(sentinels: LocalSentinelSet, node: Node, key: str) -> bool:
    with sentinels.client(node) as direct:
        return bool(direct.get(key) == b"yes")
