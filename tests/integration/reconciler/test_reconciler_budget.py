"""The coalescing window's reading of the shared Cloudflare budget, from what the dns-worker's real rate limiter
writes in Redis: as calls use the budget up, the window grows; a 429's pause makes it grow the most."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.ratelimit import Admission, RateLimiter
from flareport_reconciler.budget import CALM, LOW, SCARCE, Budget
from flareport_reconciler.coalesce import Coalescer, Window
from fptest.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_window_grows_as_the_dns_workers_use_the_budget_up(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=21, window_seconds=300)  # a budget of 20 calls after its margin
    clock = Clock()
    budget = Budget(redis, keys, clock=clock)
    assert await budget.refresh() == CALM, "no call made yet: the whole budget is left"

    async def spend(calls: int) -> int:
        for _ in range(calls):
            assert isinstance(await limiter.try_acquire(limiter.ticket()), Admission)
        return await budget.refresh()

    assert await spend(11) == LOW, "more than half of the budget used"
    assert await spend(6) == SCARCE, "less than a fifth left"
    co = Coalescer(redis, keys, window=Window(base_ms=300, max_ms=5_000, burst_weight=1))
    assert await co.mark("zone:example.com", "p1", 1_000, pressure=budget.pressure()) == 1_200


async def test_a_pause_after_a_429_is_the_scarcest_and_readings_never_hold_a_change_up(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys, requests=1_200, window_seconds=300)
    clock = Clock()
    budget = Budget(redis, keys, clock=clock)
    assert await budget.refresh() == CALM
    await limiter.pause(60)
    assert budget.pressure() == CALM, "read less than a second ago: no new reading"
    clock.now += 1.5
    assert budget.pressure() == CALM, "the last reading at once, while a new one is made in the background"

    async def scarce() -> bool:
        return budget.pressure() == SCARCE

    await wait_for(scarce, timeout=10, what="the pause to be read")
