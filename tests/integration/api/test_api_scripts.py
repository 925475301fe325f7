"""The API's Lua scripts, each on its own against a real redis-server, through its typed wrapper."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from flareport_api.ingest import Accepted, Refused, interpret
from flareport_api.scripts import (
    AcceptEvents,
    AcquirePollSlot,
    Slot,
    delete_if_same,
    release_login,
    reserve_login,
)
from flareport_common.streams.codec import FIELD


async def _redis_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# ---- accept_events.lua ----------------------------------------------------------------------------------------


class _Batch:
    """One agent's keys and the limits its batches are admitted under."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, rate: float = 100, burst: int = 10, backlog: int = 50):
        self.redis = redis
        self.last_seq, self.stream, self.bucket = f"{prefix}seq", f"{prefix}events", f"{prefix}bucket"
        self.rate, self.burst, self.backlog = rate, burst, backlog
        self.script = AcceptEvents(redis)

    async def send(self, *events: tuple[int | None, bytes]) -> list[Any]:
        return await self.script(
            last_seq_key=self.last_seq,
            stream=self.stream,
            bucket_key=self.bucket,
            rate=self.rate,
            burst=self.burst,
            backlog_limit=self.backlog,
            group="reconciler",
            events=list(events),
        )

    def read(self, reply: list[Any]) -> Accepted | Refused:
        return interpret(reply, rate=self.rate, backlog_limit=self.backlog)

    async def payloads(self) -> list[bytes]:
        entries: Any = await self.redis.xrange(self.stream)
        return [fields[FIELD] for _, fields in entries]


async def test_a_fresh_batch_is_added_in_order_under_the_codec_field(redis: aioredis.Redis, prefix: str) -> None:
    batch = _Batch(redis, prefix)
    reply = await batch.send((1, b"one"), (None, b"unnumbered"), (2, b"two"))

    assert batch.read(reply) == Accepted(3, 2, ())
    assert await batch.payloads() == [b"one", b"unnumbered", b"two"]
    assert await redis.get(batch.last_seq) == b"2"
    assert float(await redis.hget(batch.bucket, "tokens") or 0) == pytest.approx(7, abs=0.1), "three tokens paid"
    assert await redis.pttl(batch.bucket) > 0, "a bucket that is not full expires by itself"


async def test_a_resent_batch_is_answered_as_duplicates_and_not_added_again(redis: aioredis.Redis, prefix: str) -> None:
    batch = _Batch(redis, prefix)
    await batch.send((1, b"one"), (2, b"two"))
    tokens = await redis.hget(batch.bucket, "tokens")

    assert batch.read(await batch.send((1, b"one"), (2, b"two"))) == Accepted(0, 2, (1, 2))
    assert await redis.hget(batch.bucket, "tokens") == tokens, "duplicates cost nothing"
    assert batch.read(await batch.send((2, b"two"), (3, b"three"))) == Accepted(1, 3, (2,))
    assert await batch.payloads() == [b"one", b"two", b"three"]


async def test_an_agent_that_never_numbered_its_events_has_no_last_seq(redis: aioredis.Redis, prefix: str) -> None:
    batch = _Batch(redis, prefix)
    assert batch.read(await batch.send((None, b"a"), (None, b"a"))) == Accepted(2, -1, ())
    assert await redis.exists(batch.last_seq) == 0


async def test_an_empty_bucket_refuses_the_whole_batch_with_the_wait(redis: aioredis.Redis, prefix: str) -> None:
    batch = _Batch(redis, prefix, rate=1, burst=5)
    await redis.hset(batch.bucket, mapping={"tokens": "0", "ms": str(await _redis_ms(redis))})

    reply = await batch.send((1, b"one"), (2, b"two"))

    refused = batch.read(reply)
    assert isinstance(refused, Refused) and refused.limit == "events_per_second"
    assert 1.0 < refused.retry_after <= 2.0, f"two tokens at one per second, got {refused.retry_after}"
    assert await redis.exists(batch.stream, batch.last_seq) == 0, "a refusal writes nothing"


async def test_a_batch_larger_than_the_burst_passes_a_full_bucket_and_leaves_it_in_debt(
    redis: aioredis.Redis, prefix: str
) -> None:
    batch = _Batch(redis, prefix, rate=1, burst=3)
    assert batch.read(await batch.send(*[(n, b"e") for n in range(1, 6)])) == Accepted(5, 5, ())
    assert float(await redis.hget(batch.bucket, "tokens") or 0) == pytest.approx(-2, abs=0.1)
    assert isinstance(batch.read(await batch.send((6, b"e"))), Refused), "the debt is paid back before more pass"


async def test_the_groups_unhandled_entries_count_towards_the_backlog(redis: aioredis.Redis, prefix: str) -> None:
    batch = _Batch(redis, prefix, backlog=3)
    await redis.xgroup_create(batch.stream, "reconciler", id="0", mkstream=True)
    await redis.xgroup_create(batch.stream, "auditors", id="0")
    assert batch.read(await batch.send((1, b"a"), (2, b"b"), (3, b"c"))) == Accepted(3, 3, ())

    refused = batch.read(await batch.send((4, b"d")))
    assert isinstance(refused, Refused) and refused.limit == "events_backlog" and "3 events" in refused.message

    await redis.xreadgroup("reconciler", "c1", {batch.stream: ">"}, count=2)
    first: Any = await redis.xrange(batch.stream, count=1)
    await redis.xack(batch.stream, "reconciler", first[0][0])
    # One handled, one pending, one never delivered: two still count (what "auditors" read does not matter).
    assert batch.read(await batch.send((4, b"d"))) == Accepted(1, 4, ())


async def test_without_the_group_or_its_lag_the_stream_length_is_the_backlog(
    redis: aioredis.Redis, prefix: str
) -> None:
    batch = _Batch(redis, prefix, backlog=3)
    for n in range(4):
        await redis.xadd(batch.stream, {FIELD: b"old"}, id=f"{n + 1}-0")
    refused = batch.read(await batch.send((1, b"a")))
    assert isinstance(refused, Refused) and "4 events" in refused.message, "no reconciler group: XLEN counts"

    await redis.xgroup_create(batch.stream, "reconciler", id="2-0")  # two handled, two to go
    await redis.xdel(batch.stream, "3-0")  # deleted after what the group read: Redis no longer knows the lag
    assert (await redis.xinfo_groups(batch.stream))[0]["lag"] is None
    refused = batch.read(await batch.send((1, b"a")))
    assert isinstance(refused, Refused) and "3 events" in refused.message, "the stream's length bounds the lag"


# ---- acquire_poll_slot.lua ------------------------------------------------------------------------------------


async def test_an_agent_takes_slots_up_to_its_limit_then_hears_when_the_oldest_lapses(
    redis: aioredis.Redis, prefix: str
) -> None:
    acquire, key = AcquirePollSlot(redis), f"{prefix}polls"
    assert await acquire(key, limit=2, life_ms=60_000, poll_id="a") == (Slot.TAKEN, 0)
    assert await acquire(key, limit=2, life_ms=90_000, poll_id="b") == (Slot.TAKEN, 0)

    answer, lapse_ms = await acquire(key, limit=2, life_ms=60_000, poll_id="c")

    assert answer is Slot.FULL and 50_000 < lapse_ms <= 60_000, f"the oldest slot lapses first, got {lapse_ms} ms"
    assert await redis.zrange(key, 0, -1) == [b"a", b"b"]
    assert 80_000 < await redis.pttl(key) <= 90_000, "the set lives as long as its longest slot"


async def test_a_lapsed_slot_makes_room_by_itself(redis: aioredis.Redis, prefix: str) -> None:
    acquire, key = AcquirePollSlot(redis), f"{prefix}polls"
    await redis.zadd(key, {"crashed-replica": await _redis_ms(redis) - 1})

    assert await acquire(key, limit=1, life_ms=60_000, poll_id="new") == (Slot.TAKEN, 0)
    assert await redis.zrange(key, 0, -1) == [b"new"]


# ---- reserve_login.lua and release_login.lua ------------------------------------------------------------------


async def test_attempts_are_counted_up_to_the_limit_then_refused_for_the_rest_of_the_window(
    redis: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}failures"
    assert [await reserve_login(redis, key, limit=3, window_s=60) for _ in range(3)] == [0, 0, 0]
    retry = await reserve_login(redis, key, limit=3, window_s=60)
    assert 55 <= retry <= 60, f"refused until the window ends, got {retry}"
    assert await redis.get(key) == b"3", "a refused attempt is not counted"


async def test_a_full_count_without_an_expiry_gets_the_window_again(redis: aioredis.Redis, prefix: str) -> None:
    key = f"{prefix}failures"
    await redis.set(key, 5)  # e.g. restored without its TTL: it must not block the address forever
    assert await reserve_login(redis, key, limit=3, window_s=60) == 60
    assert 55 <= await redis.ttl(key) <= 60


async def test_a_released_attempt_frees_its_place_never_below_zero_nor_creating_the_key(
    redis: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}failures"
    await release_login(redis, key)
    assert await redis.exists(key) == 0, "releasing with nothing counted creates nothing"

    await reserve_login(redis, key, limit=1, window_s=60)
    assert await reserve_login(redis, key, limit=1, window_s=60) > 0
    await release_login(redis, key)
    await release_login(redis, key)
    assert await redis.get(key) == b"0"
    assert await reserve_login(redis, key, limit=1, window_s=60) == 0


# ---- delete_if_same.lua ---------------------------------------------------------------------------------------


async def test_a_value_is_deleted_only_while_it_is_the_expected_one(redis: aioredis.Redis, prefix: str) -> None:
    key = f"{prefix}hash"
    await redis.set(key, "another replica's")
    assert await delete_if_same(redis, key, "mine") is False
    assert await redis.get(key) == b"another replica's"

    await redis.set(key, "mine")
    assert await delete_if_same(redis, key, "mine") is True
    assert await redis.exists(key) == 0
    assert await delete_if_same(redis, key, "mine") is False
