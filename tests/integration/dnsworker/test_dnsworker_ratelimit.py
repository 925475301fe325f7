"""The shared rate limit against a real Redis: a whole budget at once, refusal, replicas sharing it, the 429 pause."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.ratelimit import RateLimiter


async def test_the_budget_goes_at_once_then_the_wait_is_for_the_span(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    assert limiter.budget == 1140, "1,200 less a 5% margin may go in one span"
    assert limiter.span_ms == 315_000, "the span is the window and a 5% margin"
    taken = [await limiter.try_acquire() for _ in range(limiter.budget)]
    assert taken == [0.0] * limiter.budget, "a backlog may spend the whole budget at once"
    wait = await limiter.try_acquire()
    assert 300 < wait <= 315, f"the next call waits until the first leaves the span, got a wait of {wait}"


async def test_replicas_share_one_limit(redis: aioredis.Redis, keys: Keys) -> None:
    one = RateLimiter(redis, keys, requests=100, window_seconds=300)
    two = RateLimiter(redis, keys, requests=100, window_seconds=300)
    results = [await (one if i % 2 else two).try_acquire() for i in range(one.budget + 1)]
    assert results[: one.budget] == [0.0] * one.budget and results[-1] > 0, "the second replica must see the spend"


async def test_rate_limit_never_admits_more_than_the_budget_per_window(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=40, window_seconds=3600)
    admitted = 0
    for _ in range(100):
        if await limiter.try_acquire() == 0:
            admitted += 1
    assert admitted == limiter.budget < 40


async def test_waiting_callers_are_admitted_in_the_order_they_came(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=3, window_seconds=0.2)  # a budget of 2 per 210 ms
    order: list[int] = []

    async def call(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    await asyncio.gather(*(call(n) for n in range(6)))
    assert order == list(range(6)), f"callers of one process take their turn in arrival order, got {order}"


async def test_a_429_pause_stops_every_replica_until_retry_after(redis: aioredis.Redis, keys: Keys) -> None:
    one = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    two = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    await one.pause(30)
    wait = await two.try_acquire()
    assert 25 < wait <= 30, f"the other replica must wait out the pause, got {wait}"
    await one.pause(5)  # a shorter Retry-After never shortens a pause already in force
    assert await two.try_acquire() > 25
