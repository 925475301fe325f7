"""The shared rate limit against a real Redis: a whole budget at once, refusal, replicas sharing it, the 429 pause,
the per-second cap counting calls until a span after they ended."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.ratelimit import Admission, RateLimiter
from flareport_dns_worker.ratelimit_header import Standing


async def call(limiter: RateLimiter) -> float:
    """One call that Cloudflare answers at once: 0 when it was admitted (and has ended), else the wait."""
    answer = await limiter.try_acquire(limiter.ticket())
    if isinstance(answer, Admission):
        await limiter.ended(answer)
        return 0.0
    return answer


async def admit(limiter: RateLimiter) -> Admission:
    """One call admitted now, left in flight."""
    answer = await limiter.try_acquire(limiter.ticket())
    assert isinstance(answer, Admission), f"the call was not admitted (wait {answer} s)"
    return answer


async def test_the_budget_goes_at_once_then_the_wait_is_for_the_span(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    assert limiter.budget == 1140, "1,200 less a 5% margin may go in one span"
    assert limiter.span_ms == 315_000, "the span is the window and a 5% margin"
    taken = [await call(limiter) for _ in range(limiter.budget)]
    assert taken == [0.0] * limiter.budget, "a backlog may spend the whole budget at once"
    wait = await call(limiter)
    assert 300 < wait <= 315, f"the next call waits until the first leaves the span, got a wait of {wait}"


async def test_replicas_share_one_limit(redis: aioredis.Redis, keys: Keys) -> None:
    one = RateLimiter(redis, keys, requests=100, window_seconds=300)
    two = RateLimiter(redis, keys, requests=100, window_seconds=300)
    results = [await call(one if i % 2 else two) for i in range(one.budget + 1)]
    assert results[: one.budget] == [0.0] * one.budget and results[-1] > 0, "the second replica must see the spend"


async def test_rate_limit_never_admits_more_than_the_budget_per_window(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=40, window_seconds=3600)
    admitted = 0
    for _ in range(100):
        if await call(limiter) == 0:
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
    wait = await call(two)
    assert 25 < wait <= 30, f"the other replica must wait out the pause, got {wait}"
    await one.pause(5)  # a shorter Retry-After never shortens a pause already in force
    assert await call(two) > 25


async def test_the_per_second_cap_holds_calls_the_window_would_admit(redis: aioredis.Redis, keys: Keys) -> None:
    # Cloudflare refuses more than 200 requests per second from one address, whatever the window's budget left.
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300, per_second=200)
    assert (limiter.second_budget, limiter.second_span_ms) == (190, 1050), "200 a second less a 5% margin"
    taken = [await call(limiter) for _ in range(limiter.second_budget)]
    assert taken == [0.0] * limiter.second_budget
    wait = await call(limiter)
    assert 0.9 < wait <= 1.05, f"the 191st call waits until the first is a second span old, got {wait}"
    # Once the second's calls have left its span, the window's budget goes on where it stood.
    deadline = asyncio.get_running_loop().time() + 5
    while (wait := await call(limiter)) > 0:
        assert asyncio.get_running_loop().time() < deadline, "the per-second cap never reopened"
        await asyncio.sleep(wait)
    view = await redis.hgetall(keys.cf_rate_bucket)
    assert int(view[b"tokens"]) == limiter.budget - limiter.second_budget - 1, "the window counts every call"


async def test_replicas_share_the_per_second_cap(redis: aioredis.Redis, keys: Keys) -> None:
    one = RateLimiter(redis, keys, requests=1200, window_seconds=300, per_second=20)
    two = RateLimiter(redis, keys, requests=1200, window_seconds=300, per_second=20)
    results = [await call(one if i % 2 else two) for i in range(one.second_budget + 1)]
    assert results[:-1] == [0.0] * one.second_budget and results[-1] > 0, "replicas count as one address"


async def test_a_window_shorter_than_a_second_still_keeps_the_per_second_cap(redis: aioredis.Redis, keys: Keys) -> None:
    # The window's span (210 ms) would drop calls the per-second span (1,050 ms) still counts.
    limiter = RateLimiter(redis, keys, requests=100, window_seconds=0.2, per_second=5)
    admitted = 0
    deadline = asyncio.get_running_loop().time() + 0.6
    while asyncio.get_running_loop().time() < deadline:
        wait = await call(limiter)
        if wait == 0:
            admitted += 1
        else:
            await asyncio.sleep(min(wait, 0.05))
    assert admitted == limiter.second_budget == 4, f"{admitted} calls went within one second span"


async def test_without_a_per_second_cap_the_window_alone_decides(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys, requests=400, window_seconds=300)
    assert limiter.second_budget == 0
    taken = [await call(limiter) for _ in range(limiter.budget)]
    assert taken == [0.0] * limiter.budget and await call(limiter) > 100


async def test_a_call_in_flight_keeps_its_place_in_the_per_second_cap(redis: aioredis.Redis, keys: Keys) -> None:
    # Cloudflare counts a call when it arrives, which may be long after its admission (a cold connection): until
    # the call has ended it may still arrive, so it counts, and then for one span more.
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300, per_second=20)
    flying = [await admit(limiter) for _ in range(limiter.second_budget)]
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.3  # past a second span after their admission
    while loop.time() < until:
        wait = await limiter.try_acquire(limiter.ticket())
        assert isinstance(wait, float), f"a call went while {limiter.second_budget} were in flight"
        assert 0 < wait <= 0.025, f"with calls in flight, ask again shortly, not in {wait} s"
        await asyncio.sleep(wait)
    for admission in flying:
        await limiter.ended(admission)
    wait = await call(limiter)
    assert 0.9 < wait <= 1.05, f"ended calls count for one span after they ended, got a wait of {wait}"


async def test_calls_of_a_replica_that_died_in_flight_free_their_places_after_their_hold(
    redis: aioredis.Redis, keys: Keys
) -> None:
    dead = RateLimiter(redis, keys, requests=1200, window_seconds=300, per_second=20, hold_seconds=0.2)
    for _ in range(dead.second_budget):
        await admit(dead)  # never ended
    alive = RateLimiter(redis, keys, requests=1200, window_seconds=300, per_second=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (wait := await call(alive)) > 0:
        assert loop.time() - started < 3, "calls that never ended kept their places past their hold"
        await asyncio.sleep(wait)
    assert loop.time() - started > 1.0, "the dead calls counted for a span after their hold"


async def test_cloudflare_s_standing_leaves_a_share_of_its_own_quota_to_others(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    answered = await admit(limiter)
    # A limit of 100 per window with 12 left: 5 of them (5% of 100) stay for the dashboard and other tools.
    await limiter.ended(answered, Standing(remaining=12, reset_seconds=30, quota=100))
    taken = [await call(limiter) for _ in range(8)]
    assert taken[:7] == [0.0] * 7 and 25 < taken[7] <= 30, f"7 more calls, then wait for the reset: {taken}"


async def test_without_its_quota_the_standing_leaves_the_limiter_s_own_margin(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys, requests=1200, window_seconds=300)
    answered = await admit(limiter)
    await limiter.ended(answered, Standing(remaining=70, reset_seconds=30))
    taken = [await call(limiter) for _ in range(11)]
    assert taken[:10] == [0.0] * 10 and taken[10] > 25, f"70 left less the 60 kept for others: {taken}"
