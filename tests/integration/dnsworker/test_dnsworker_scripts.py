"""The dns-worker's Lua scripts, each on its own against a real redis-server, through its typed wrapper."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_dns_worker.scripts import PauseCalls, ReleaseLease, RenewLease, TakeToken


async def _redis_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# ---- take_token.lua -------------------------------------------------------------------------------------------


async def test_a_missing_bucket_starts_full_and_pays_one_token(redis: aioredis.Redis, prefix: str) -> None:
    take, bucket = TakeToken(redis), f"{prefix}bucket"
    assert await take(bucket, f"{prefix}pause", burst=5, refill_per_ms=0.001) == 0
    assert float(await redis.hget(bucket, "tokens") or 0) == 4
    assert 5_000 < await redis.pttl(bucket) <= 6_000, "kept as long as a refill from empty takes, plus a second"


async def test_an_empty_bucket_answers_the_wait_for_one_token(redis: aioredis.Redis, prefix: str) -> None:
    take, bucket = TakeToken(redis), f"{prefix}bucket"
    await redis.hset(bucket, mapping={"tokens": "0.5", "at": str(await _redis_ms(redis))})

    wait_ms = await take(bucket, f"{prefix}pause", burst=5, refill_per_ms=0.001)

    assert 400 < wait_ms <= 500, f"half a token at one per second, got {wait_ms} ms"
    assert float(await redis.hget(bucket, "tokens") or 0) < 1, "a refused call takes nothing"


async def test_a_pause_refuses_tokens_until_it_ends_and_leaves_the_bucket_alone(
    redis: aioredis.Redis, prefix: str
) -> None:
    take, bucket, pause = TakeToken(redis), f"{prefix}bucket", f"{prefix}pause"
    await redis.set(pause, await _redis_ms(redis) + 20_000)

    wait_ms = await take(bucket, pause, burst=5, refill_per_ms=0.001)

    assert 15_000 < wait_ms <= 20_000
    assert await redis.exists(bucket) == 0


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
