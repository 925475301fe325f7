"""The shared Redis pool makes callers wait for a free connection instead of failing a burst, for no longer than
it was told; a write to a server that stopped reading is cut off by the socket timeout."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flareport_cli.localredis import LocalRedis
from flareport_common.redisconn import connect
from flareport_common.settings import load_reconciler
from fptest.waiting import wait_for


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(redis_server: LocalRedis, prefix: str) -> None:
    settings = load_reconciler({"REDIS_URL": redis_server.url}).common
    client = connect(settings, max_connections=4)
    try:
        # 40 concurrent blocking calls on 4 connections: each holds its connection for 50 ms.
        results = await asyncio.gather(*(client.blpop([f"{prefix}empty-{i}"], timeout=0.05) for i in range(40)))
        assert results == [None] * 40
    finally:
        await client.aclose()


async def test_a_caller_waits_no_longer_than_the_wait_and_the_pool_keeps_its_size(
    redis_server: LocalRedis, prefix: str
) -> None:
    settings = load_reconciler({"REDIS_URL": redis_server.url}).common
    client = connect(settings, max_connections=2, wait_seconds=0.2)
    pool = client.connection_pool
    try:
        await asyncio.gather(*(client.incr(f"{prefix}n") for _ in range(200)))  # free connections: the quick way
        assert int(await client.get(f"{prefix}n") or 0) == 200

        async def hold(i: int) -> object:
            return await client.blpop([f"{prefix}empty-{i}"], timeout=1)

        holding = [asyncio.create_task(hold(i)) for i in range(2)]

        async def taken() -> bool:
            return len(pool._in_use_connections) == 2

        await wait_for(taken, what="both connections taken")
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.get(f"{prefix}n")
        await asyncio.gather(*holding)
        assert not pool._in_use_connections and len(pool._available_connections) <= 2
    finally:
        await client.aclose()


class _StopsReading(asyncio.Protocol):
    """A Redis stand-in that answers each whole command (+PONG to a PING, else +OK) until told to stop reading, as
    a hung server would."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (command := self.reader.gets()) is not False:
            assert self.transport is not None
            self.transport.write(b"+PONG\r\n" if command[0].upper() == b"PING" else b"+OK\r\n")


async def test_a_write_to_a_server_that_stopped_reading_times_out_and_drops_the_connection() -> None:
    servers: list[_StopsReading] = []

    def protocol() -> _StopsReading:
        servers.append(_StopsReading())
        return servers[-1]

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_reconciler({"REDIS_URL": f"redis://127.0.0.1:{port}/0?socket_timeout=0.5"}).common
    client = connect(settings, max_connections=1)
    try:
        assert await client.set("k", "v")  # connected, handshake answered
        (stand_in,) = servers
        assert stand_in.transport is not None
        stand_in.transport.pause_reading()
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
            await client.set("k", b"x" * 64_000_000)  # more than the sockets buffer: the write must wait
        (connection,) = client.connection_pool._available_connections
        assert not connection.is_connected, "a connection whose write was cut off is not used again"
    finally:
        await client.aclose()
        server.close()
