"""Several streams read by one loop (``ConsumerSet``, the reconciler's events, intents and cf-results): each stream
keeps its handler, order, acks and dead letters, a full stream does not hold the others up, and an idle set makes
one read for all its streams per claim interval yet takes over a dead consumer's message within the bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.messages import DeadLetter
from flareport_common.streams import ConsumerConfig, ConsumerSet, Delivery, Producer, StreamConsumer
from flareport_common.streams.codec import encode
from fptest.messages import Work
from fptest.waiting import already, wait_for

from .test_stream_runtime import make_config

STREAMS = ("a", "b", "c")


def configs(prefix: str, **overrides: Any) -> dict[str, ConsumerConfig]:
    """One consumer's settings per stream, as the single-stream tests' (``make_config``)."""
    return {name: make_config(prefix, stream=f"{prefix}{name}", metrics_label=name, **overrides) for name in STREAMS}


async def _pending(redis: aioredis.Redis, config: ConsumerConfig) -> int:
    return int((await redis.xpending(config.stream, config.group))["pending"])


async def test_each_stream_keeps_its_handler_order_acks_and_dead_letters(redis: aioredis.Redis, prefix: str) -> None:
    cfg = configs(prefix, concurrency=1, count=1)  # one handler at a time per stream: their order is observable
    seen: dict[str, list[int]] = {name: [] for name in STREAMS}

    def handler(name: str) -> Callable[[Work, Delivery], Awaitable[None]]:
        async def handle(message: Work, delivery: Delivery) -> None:
            assert delivery.stream == cfg[name].stream
            seen[name].append(message.n)

        return handle

    consumers = [StreamConsumer(redis, cfg[name], Work, handler(name)) for name in STREAMS]
    reading = ConsumerSet(consumers)
    producer = Producer(redis)
    task = asyncio.create_task(reading.run())
    try:
        for n in range(20):
            for name in STREAMS:
                await producer.send(cfg[name].stream, Work(n=n if name != "b" else 100 + n))
        await redis.xadd(cfg["c"].stream, {"junk": "1"})  # undecodable: dead-lettered from its own stream
        await wait_for(lambda: already(all(len(v) == 20 for v in seen.values())), what="every stream handled")
        await wait_for(lambda: _positive(redis.xlen(cfg["c"].dead_letter_stream)), what="the junk entry's dead letter")
        for config in cfg.values():
            assert await _pending(redis, config) == 0, f"{config.stream}: everything acknowledged"
        assert seen["a"] == list(range(20)) and seen["c"] == list(range(20)), "each stream in its own order"
        assert seen["b"] == [100 + n for n in range(20)], "stream b's messages went to stream b's handler"
        letters: Any = await redis.xrange(cfg["c"].dead_letter_stream)
        decoded = [msgspec.json.decode(fields[b"m"], type=DeadLetter) for _, fields in letters]
        assert [(d.source_stream, d.reason) for d in decoded] == [(cfg["c"].stream, "undecodable")]
    finally:
        reading.stop()
        await asyncio.wait_for(task, timeout=15)


async def test_a_stream_whose_slots_are_taken_does_not_hold_up_the_others(redis: aioredis.Redis, prefix: str) -> None:
    cfg = configs(prefix, concurrency=1)
    release = asyncio.Event()
    handled: list[tuple[str, int]] = []

    def handler(name: str) -> Callable[[Work, Delivery], Awaitable[None]]:
        async def handle(message: Work, delivery: Delivery) -> None:
            if name == "a":
                await release.wait()  # stream a's one slot stays taken
            handled.append((name, message.n))

        return handle

    reading = ConsumerSet([StreamConsumer(redis, cfg[name], Work, handler(name)) for name in STREAMS])
    producer = Producer(redis)
    task = asyncio.create_task(reading.run())
    try:
        await producer.send(cfg["a"].stream, Work(n=1))
        await producer.send(cfg["a"].stream, Work(n=2))
        for n in range(5):
            await producer.send(cfg["b"].stream, Work(n=n))
        await wait_for(lambda: already(len(handled) == 5), what="stream b handled while stream a's slot is taken")
        assert all(name == "b" for name, _ in handled)
        info = await redis.xinfo_groups(cfg["a"].stream)
        assert int(info[0]["pending"]) == 1, "stream a was given no more than its one free slot"
        release.set()
        await wait_for(lambda: already(len(handled) == 7), what="stream a handled once its slot is free")
    finally:
        release.set()
        reading.stop()
        await asyncio.wait_for(task, timeout=15)


async def test_an_idle_set_reads_all_its_streams_at_once_yet_takes_over_a_dead_consumers_message_in_time(
    redis_factory: Callable[..., LocalRedis], prefix: str
) -> None:
    # Its own server: the test counts the commands Redis answered.
    server = redis_factory(aof=False)
    client = aioredis.Redis.from_url(server.url)
    # Reclaims every 50 ms at first; while they find nothing the interval doubles, up to a third of the idle time.
    cfg = configs(prefix, claim_idle_ms=1_200, claim_interval_s=0.05, block_ms=60_000)
    handled: list[tuple[str, int, float]] = []

    def handler(name: str) -> Callable[[Work, Delivery], Awaitable[None]]:
        async def handle(message: Work, delivery: Delivery) -> None:
            handled.append((name, message.n, time.monotonic()))

        return handle

    async def calls(command: str) -> int:
        stats = await client.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    reading = ConsumerSet([StreamConsumer(client, cfg[name], Work, handler(name)) for name in STREAMS])
    task = asyncio.create_task(reading.run())
    try:
        await wait_for(lambda: _positive(calls("xreadgroup")), what="the set's first read")
        reads, reclaims, began = await calls("xreadgroup"), await calls("xautoclaim"), time.monotonic()
        await asyncio.sleep(2.0)  # a window to count in, not a wait for something to happen
        reads, reclaims = await calls("xreadgroup") - reads, await calls("xautoclaim") - reclaims
        passes = (time.monotonic() - began) / cfg["a"].longest_claim_interval_s
        # A loop per stream would read three times per interval: about 15 reads in 2 s.
        assert reads <= 8, f"an idle set of three streams read {reads} times in 2 s (about {passes:.0f} intervals)"
        assert reclaims <= 3 * 8, f"{reclaims} reclaims in 2 s: one per stream per interval expected"

        # A consumer takes a message of the last stream and dies: the set takes it over within the bound. Added and
        # delivered in one transaction, so the set's blocked read never sees it as new.
        pipe = client.pipeline(transaction=True)
        pipe.xadd(cfg["c"].stream, encode(Work(n=9)))  # type: ignore[arg-type]
        pipe.xreadgroup("workers", "dead", {cfg["c"].stream: ">"}, count=1)
        await pipe.execute()
        delivered = time.monotonic()
        bound = cfg["c"].claim_idle_ms / 1000 + cfg["c"].longest_claim_interval_s
        await wait_for(lambda: already(bool(handled)), timeout=bound + 5, what="the dead consumer's message")
        name, n, at = handled[0]
        assert (name, n) == ("c", 9)
        took = at - delivered
        assert 1.2 <= took <= bound + 1.0, f"taken over {took:.2f} s after its delivery (bound {bound:.2f} s)"
    finally:
        reading.stop()
        await asyncio.wait_for(task, timeout=15)
        await client.aclose()


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def test_a_full_stream_is_read_again_as_soon_as_a_slot_frees(redis: aioredis.Redis, prefix: str) -> None:
    """A flood on one stream (one slot, handlers a few milliseconds long) while the others are idle: each freed slot
    is filled at once. Left out of a read that blocks on the idle streams until the next reclaim, each entry waited
    out that read (the reconciler's events stream under a flood: a batch per claim interval)."""
    cfg = configs(prefix, concurrency=1, count=1, block_ms=60_000, claim_interval_s=30.0)
    handled: list[int] = []

    async def slow(message: Work, delivery: Delivery) -> None:
        await asyncio.sleep(0.01)  # the handler's own work, not synchronisation
        handled.append(message.n)

    async def idle(message: Work, delivery: Delivery) -> None:
        raise AssertionError("nothing is sent to the idle streams")

    consumers = [StreamConsumer(redis, cfg["a"], Work, slow)]
    consumers += [StreamConsumer(redis, cfg[name], Work, idle) for name in ("b", "c")]
    reading = ConsumerSet(consumers)
    producer = Producer(redis)
    task = asyncio.create_task(reading.run())
    try:
        for n in range(10):
            await producer.send(cfg["a"].stream, Work(n=n))
        # 10 entries of 10 ms each; waiting out a blocked read per entry would take minutes.
        await wait_for(lambda: already(len(handled) == 10), timeout=20, what="the full stream's entries")
        assert handled == list(range(10))
    finally:
        reading.stop()
        await asyncio.wait_for(task, timeout=15)
