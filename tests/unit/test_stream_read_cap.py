"""A consumer's blocking read stays under its connections' read timeout (or it would time out and reconnect)."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.streams.consumer import read_cap_ms


async def test_the_read_blocks_at_most_four_fifths_of_the_read_timeout_and_never_longer_than_asked() -> None:
    default = aioredis.Redis.from_url("redis://127.0.0.1:1")  # redis-py 8's connections time out reads at 5 s
    timeout = default.connection_pool.make_connection().socket_timeout  # type: ignore[no-untyped-call]
    expected = 5_000 if not timeout else min(5_000, int(timeout * 800))
    assert read_cap_ms(default, 5_000) == expected, "the connection class's own read timeout counts"
    assert read_cap_ms(aioredis.Redis(socket_timeout=2.0), 5_000) == 1_600, "Sentinel connections time out at 2 s"
    assert read_cap_ms(aioredis.Redis(socket_timeout=2.0), 500) == 500, "a shorter block is kept"
    assert read_cap_ms(aioredis.Redis(socket_timeout=None), 5_000) == 5_000, "no read timeout: the block as asked"
    await default.aclose()
