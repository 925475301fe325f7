"""Trimming a stream against a real redis-server: only what every consumer group handled is ever removed."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from flareport_common.streams import ConsumerConfig, Delivery, Producer, StreamConsumer
from flareport_common.streams.trim import StreamTrimmer
from fptest.messages import Work


async def _ids(redis: aioredis.Redis, stream: str) -> list[bytes]:
    entries: Any = await redis.xrange(stream)
    return [entry_id for entry_id, _ in entries]


async def _read(redis: aioredis.Redis, stream: str, group: str, count: int) -> list[bytes]:
    reply: Any = await redis.xreadgroup(group, "c1", {stream: ">"}, count=count)
    return [entry_id for entry_id, _ in reply[0][1]] if reply else []


async def test_entries_a_group_has_not_handled_are_never_trimmed(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{prefix}work"
    pipe = redis.pipeline(transaction=False)
    for i in range(3000):  # many macro-nodes (100 entries each by default)
        pipe.xadd(stream, {"m": str(i)})
    await pipe.execute()
    everything = await _ids(redis, stream)
    trimmer = StreamTrimmer(redis, stream)
    assert await trimmer.trim() == 0, "no group has read anything: nothing may go"

    await redis.xgroup_create(stream, "fast", id="0")
    await redis.xgroup_create(stream, "slow", id="0")
    await redis.xack(stream, "fast", *await _read(redis, stream, "fast", 3000))
    slow = await _read(redis, stream, "slow", 1000)
    await redis.xack(stream, "slow", *slow[:500])  # 500 handled, 500 pending, 2000 never delivered
    await trimmer.trim()
    assert set(everything[500:]) <= set(await _ids(redis, stream)), "a pending or undelivered entry was trimmed"
    assert len(await _ids(redis, stream)) < 2500 + 100, "handled entries stay at most one macro-node"

    await redis.xack(stream, "slow", *slow[500:], *await _read(redis, stream, "slow", 3000))
    await trimmer.trim()
    assert len(await _ids(redis, stream)) < 100


async def test_a_missing_stream_or_a_group_that_read_nothing_trims_nothing(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{prefix}work"
    trimmer = StreamTrimmer(redis, stream)
    assert await trimmer.trim() == 0
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    for i in range(500):
        await redis.xadd(stream, {"m": str(i)})
    assert await trimmer.trim() == 0
    assert await redis.xlen(stream) == 500


async def test_a_consumer_trims_what_its_group_handled_but_not_what_another_group_still_needs(
    redis: aioredis.Redis, prefix: str
) -> None:
    stream = f"{prefix}work"
    config = ConsumerConfig(stream=stream, group="workers", consumer="c1", dead_letter_stream=f"{prefix}dead")
    handled: list[str] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        handled.append(delivery.message_id)

    await redis.xgroup_create(stream, "auditors", id="0", mkstream=True)  # a second group that reads nothing
    producer = Producer(redis)
    ids = await producer.send_many(stream, [Work(n=i) for i in range(500)])
    assert await StreamConsumer(redis, config, Work, handle).run_burst() == 500
    assert await redis.xlen(stream) == 500, "the auditors have read nothing: everything stays"

    await redis.xgroup_destroy(stream, "auditors")
    more = await producer.send_many(stream, [Work(n=i) for i in range(500, 600)])
    assert await StreamConsumer(redis, config, Work, handle).run_burst() == 100
    assert await redis.xlen(stream) < 100, "handled by every group: trimmed (but for the last macro-node)"
    assert handled == ids + more


async def test_the_trim_answers_how_many_entries_it_removed(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{prefix}work"
    pipe = redis.pipeline(transaction=False)
    for i in range(1000):
        pipe.xadd(stream, {"m": str(i)})
    await pipe.execute()
    await redis.xgroup_create(stream, "late", id="$")  # joined after everything: nothing left for it to read

    removed = await StreamTrimmer(redis, stream).trim()

    assert removed > 900 and removed == 1000 - await redis.xlen(stream)
