"""The shared token bucket against a real Redis: burst, refusal, replicas sharing it, and the 429 pause."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.ratelimit import RateLimiter


async def test_bucket_gives_its_burst_then_asks_to_wait(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    assert limiter.burst == 114, "a tenth of the budget (1,200 less a 5% margin) may go at once"
    taken = [await limiter.try_acquire() for _ in range(limiter.burst)]
    assert taken == [0.0] * limiter.burst
    wait = await limiter.try_acquire()
    assert 0 < wait <= 1.0, f"after the burst one token refills in ~0.28 s, got a wait of {wait}"


async def test_replicas_share_one_bucket(redis: aioredis.Redis, keys: Keys) -> None:
    one = RateLimiter(redis, keys, requests=100, window_seconds=300)
    two = RateLimiter(redis, keys, requests=100, window_seconds=300)
    results = [await (one if i % 2 else two).try_acquire() for i in range(one.burst + 1)]
    assert results[: one.burst] == [0.0] * one.burst and results[-1] > 0, "the second replica must see the spend"


async def test_rate_limit_never_admits_more_than_the_budget_per_window(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=40, window_seconds=3600)
    # Over a window of one hour only the burst is available at once; the rest trickles in over the hour.
    admitted = 0
    for _ in range(100):
        if await limiter.try_acquire() == 0:
            admitted += 1
    assert admitted == limiter.burst < 40


async def test_a_429_pause_stops_every_replica_until_retry_after(redis: aioredis.Redis, keys: Keys) -> None:
    one = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    two = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    await one.pause(30)
    wait = await two.try_acquire()
    assert 25 < wait <= 30, f"the other replica must wait out the pause, got {wait}"
    await one.pause(5)  # a shorter Retry-After never shortens a pause already in force
    assert await two.try_acquire() > 25
