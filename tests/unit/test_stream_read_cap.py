"""A consumer's blocking read gets its connections' read timeout as a margin after its block (or a long block would
time out and reconnect), and its reclaim interval backs off only while reclaims find nothing."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.streams import ConsumerConfig
from flareport_common.streams.consumerset import read_timeout_s


async def test_the_read_margin_is_the_connections_read_timeout() -> None:
    default = aioredis.Redis.from_url("redis://127.0.0.1:1")  # redis-py 8's connections time out reads at 5 s
    timeout = default.connection_pool.make_connection().socket_timeout  # type: ignore[no-untyped-call]
    assert read_timeout_s(default) == (float(timeout) if timeout else 5.0), "the connection class's own timeout"
    assert read_timeout_s(aioredis.Redis(socket_timeout=2.0)) == 2.0, "Sentinel connections time out at 2 s"
    assert read_timeout_s(aioredis.Redis(socket_timeout=None)) == 5.0, "no read timeout: 5 s all the same"
    await default.aclose()


def test_the_longest_reclaim_interval_is_a_third_of_the_idle_timeout_unless_set() -> None:
    config = ConsumerConfig(stream="s", group="g", consumer="c", dead_letter_stream="d", claim_idle_ms=30_000)
    assert config.longest_claim_interval_s == 10.0
    assert ConsumerConfig("s", "g", "c", "d", claim_idle_ms=3_000, claim_interval_s=1.5).longest_claim_interval_s == 1.5
    assert ConsumerConfig("s", "g", "c", "d", claim_interval_max_s=7.0).longest_claim_interval_s == 7.0
