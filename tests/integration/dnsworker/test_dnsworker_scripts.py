"""The dns-worker's Lua scripts, each on its own against a real redis-server, through its typed wrapper."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_dns_worker.scripts import EndCall, PauseCalls, ReleaseLease, RenewLease, TakeToken


async def _redis_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# ---- take_token.lua and end_call.lua ---------------------------------------------------------------------------


def _cap_keys(prefix: str) -> tuple[str, str, str]:
    """The per-second cap's calls, Cloudflare's standing and the admissions' serial."""
    return f"{prefix}recent", f"{prefix}standing", f"{prefix}serial"


async def _wait(take: TakeToken, calls: str, view: str, pause: str, prefix: str, *, budget: int) -> int:
    """One call under a window of ``budget`` per minute alone: 0 when admitted, else the milliseconds to wait."""
    wait_ms, _ = await take(calls, view, pause, *_cap_keys(prefix), budget=budget, span_ms=60_000)
    return wait_ms


async def test_calls_are_admitted_up_to_the_budget_and_kept_for_one_span(redis: aioredis.Redis, prefix: str) -> None:
    take, calls, view = TakeToken(redis), f"{prefix}calls", f"{prefix}view"
    waits = [await _wait(take, calls, view, f"{prefix}pause", prefix, budget=3) for _ in range(3)]
    assert waits == [0, 0, 0], "a whole budget may go at once"
    assert await redis.llen(calls) == 3
    assert 59_000 < await redis.pttl(calls) <= 60_000, "the admitted calls are kept for one span"
    assert float(await redis.hget(view, "tokens") or -1) == 0, "the status view says no call may start now"


async def test_a_full_span_answers_the_wait_until_its_oldest_call_leaves(redis: aioredis.Redis, prefix: str) -> None:
    take, calls, view = TakeToken(redis), f"{prefix}calls", f"{prefix}view"
    now = await _redis_ms(redis)
    await redis.rpush(calls, now - 50_000, now - 10_000)

    wait_ms = await _wait(take, calls, view, f"{prefix}pause", prefix, budget=2)

    assert 9_000 < wait_ms <= 10_000, f"the oldest call leaves the span in 10 s, got {wait_ms} ms"
    assert await redis.llen(calls) == 2, "a refused call is not counted"


async def test_calls_older_than_the_span_no_longer_count(redis: aioredis.Redis, prefix: str) -> None:
    take, calls, view = TakeToken(redis), f"{prefix}calls", f"{prefix}view"
    now = await _redis_ms(redis)
    await redis.rpush(calls, now - 70_000, now - 61_000, now - 1_000)

    assert await _wait(take, calls, view, f"{prefix}pause", prefix, budget=2) == 0
    assert [int(c) for c in await redis.lrange(calls, 0, 0)] == [now - 1_000], "only calls within the span are kept"
    assert await redis.llen(calls) == 2


async def test_after_a_lower_limit_the_wait_is_for_the_budget_th_newest(redis: aioredis.Redis, prefix: str) -> None:
    take, calls, view = TakeToken(redis), f"{prefix}calls", f"{prefix}view"
    now = await _redis_ms(redis)
    await redis.rpush(calls, now - 40_000, now - 30_000, now - 20_000)  # admitted under a budget of 3

    wait_ms = await _wait(take, calls, view, f"{prefix}pause", prefix, budget=2)

    assert 29_000 < wait_ms <= 30_000, f"two may be in the span: wait for the second newest to leave, got {wait_ms}"


async def test_a_pause_refuses_calls_until_it_ends_and_counts_nothing(redis: aioredis.Redis, prefix: str) -> None:
    take, calls, pause = TakeToken(redis), f"{prefix}calls", f"{prefix}pause"
    await redis.set(pause, await _redis_ms(redis) + 20_000)

    wait_ms = await _wait(take, calls, f"{prefix}view", pause, prefix, budget=5)

    assert 15_000 < wait_ms <= 20_000
    assert await redis.exists(calls) == 0


async def _capped(take: TakeToken, prefix: str, ticket: str) -> tuple[int, int]:
    """One call under a window of 100 per minute and a per-second cap of 1, held 30 s while in flight."""
    keys = (f"{prefix}calls", f"{prefix}view", f"{prefix}pause", *_cap_keys(prefix))
    return await take(
        *keys, budget=100, span_ms=60_000, second_budget=1, second_span_ms=1_000, ticket=ticket, hold_ms=30_000
    )


async def test_the_per_second_cap_holds_a_call_in_flight_until_its_hold(redis: aioredis.Redis, prefix: str) -> None:
    take, recent = TakeToken(redis), f"{prefix}recent"
    before = await _redis_ms(redis)

    assert await _capped(take, prefix, "a") == (0, 1), "admitted, the first call ever"
    held = await redis.zscore(recent, "a")
    assert held is not None and before + 30_000 <= held < before + 31_000, "in flight: counted until its hold"
    assert await _capped(take, prefix, "b") == (25, 0), "a full cap of calls in flight: ask again shortly"
    assert await redis.zscore(recent, "b") is None, "a refused call is not counted"
    assert await redis.llen(f"{prefix}calls") == 1, "nor does it spend the window"


async def test_an_ended_call_counts_one_second_span_after_its_end(redis: aioredis.Redis, prefix: str) -> None:
    take, end, recent = TakeToken(redis), EndCall(redis), f"{prefix}recent"
    _, serial = await _capped(take, prefix, "a")

    await end(*_cap_keys(prefix), ticket="a", serial=serial)

    wait_ms, _ = await _capped(take, prefix, "b")
    assert 900 < wait_ms <= 1_000, f"the ended call leaves the cap a second span after its end, got {wait_ms}"
    await redis.zrem(recent, "a")  # as if a second span had passed
    await end(*_cap_keys(prefix), ticket="a", serial=serial)
    assert await redis.zscore(recent, "a") is None, "a call no longer counted is not counted again when it ends"
    assert await redis.exists(f"{prefix}standing") == 0, "an answer without a Ratelimit header sets no standing"


async def test_cloudflare_s_standing_holds_calls_until_its_reset(redis: aioredis.Redis, prefix: str) -> None:
    # Someone else (the dashboard, another tool) spent most of the user's budget: Cloudflare's header says 12 left.
    take, end = TakeToken(redis), EndCall(redis)
    calls, view, pause = f"{prefix}calls", f"{prefix}view", f"{prefix}pause"
    _, first = await take(calls, view, pause, *_cap_keys(prefix), budget=100, span_ms=60_000)
    _, second = await take(calls, view, pause, *_cap_keys(prefix), budget=100, span_ms=60_000)
    before = await _redis_ms(redis)

    # The first call's answer: 12 left, less a reserve of 5 for everyone else, less the second call admitted after
    # it (Cloudflare may not have counted it yet): 6 more calls.
    await end(*_cap_keys(prefix), ticket="", serial=first, remaining=12, reset_ms=20_000, reserve=5)

    admitted = [await _wait(take, calls, view, pause, prefix, budget=100) for _ in range(6)]
    assert admitted == [0] * 6
    assert int(await redis.hget(view, "tokens") or -1) == 0, "the status view shows Cloudflare's standing"
    wait_ms = await _wait(take, calls, view, pause, prefix, budget=100)
    assert 19_000 - (await _redis_ms(redis) - before) < wait_ms <= 20_000, f"wait for the reset, got {wait_ms}"
    # An older answer arriving late (more left, same window) never raises the standing.
    await end(*_cap_keys(prefix), ticket="", serial=second, remaining=11, reset_ms=20_000, reserve=5)
    assert await _wait(take, calls, view, pause, prefix, budget=100) > 0
    # A new window (its reset later than the standing's): the new standing replaces the old.
    await end(*_cap_keys(prefix), ticket="", serial=second + 7, remaining=1_000, reset_ms=300_000, reserve=5)
    assert await _wait(take, calls, view, pause, prefix, budget=100) == 0


# ---- pause_calls.lua ------------------------------------------------------------------------------------------


async def test_a_pause_only_ever_moves_later(redis: aioredis.Redis, prefix: str) -> None:
    pause_calls, pause = PauseCalls(redis), f"{prefix}pause"
    before = await _redis_ms(redis)

    until = await pause_calls(pause, pause_ms=30_000)

    assert before + 30_000 <= until < before + 35_000
    assert int(await redis.get(pause) or 0) == until
    assert 30_000 < await redis.pttl(pause) <= 31_000, "the key outlives the pause by a second"

    await pause_calls(pause, pause_ms=5_000)
    assert int(await redis.get(pause) or 0) == until, "a shorter pause never shortens one in force"


# ---- renew_lease.lua and release_lease.lua --------------------------------------------------------------------


async def test_only_the_holder_renews_its_lease(redis: aioredis.Redis, prefix: str) -> None:
    renew, lease = RenewLease(redis), f"{prefix}lease"
    await redis.set(lease, "holder", px=1_000)

    assert await renew(lease, token="someone else", lease_ms=60_000) is False
    assert await redis.pttl(lease) <= 1_000
    assert await renew(lease, token="holder", lease_ms=60_000) is True
    assert await redis.pttl(lease) > 50_000
    assert await renew(f"{prefix}gone", token="holder", lease_ms=60_000) is False
    assert await redis.exists(f"{prefix}gone") == 0


async def test_only_the_holder_releases_its_lease(redis: aioredis.Redis, prefix: str) -> None:
    release, lease = ReleaseLease(redis), f"{prefix}lease"
    await redis.set(lease, "holder")

    assert await release(lease, token="someone else") is False
    assert await redis.get(lease) == b"holder"
    assert await release(lease, token="holder") is True
    assert await redis.exists(lease) == 0
    assert await release(lease, token="holder") is False
