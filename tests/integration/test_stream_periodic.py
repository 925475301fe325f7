"""The read loop's periodic round trips (reclaims, trims) against a real redis-server: they wait while a message's
handler runs, so they are not on its way to Cloudflare, and a handler that never ends does not stop them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from flareport_common.streams import ConsumerSet, Delivery, Producer, StreamConsumer, consumerset
from flareport_common.streams.trim import StreamTrimmer
from fptest.messages import Work
from fptest.waiting import wait_for

from .test_stream_runtime import make_config


class Loop:
    """One consumer set over ``<prefix>work``: message 0 ends at once, any other runs until ``release`` is set.
    Records every trim (when, how many handlers were running) and counts the loop's reads."""

    def __init__(self, redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stream = f"{prefix}work"
        self.running = 0
        self.release = asyncio.Event()
        self.done: list[int] = []
        self.trims: list[tuple[float, int]] = []
        self.reads = 0
        trim, read_new = StreamTrimmer.trim, ConsumerSet._read_new

        async def recorded_trim(trimmer: StreamTrimmer) -> int:
            self.trims.append((time.monotonic(), self.running))
            return await trim(trimmer)

        async def counted_read(reading: ConsumerSet, block_ms: int) -> int:
            self.reads += 1
            return await read_new(reading, block_ms)

        monkeypatch.setattr(StreamTrimmer, "trim", recorded_trim)
        monkeypatch.setattr(ConsumerSet, "_read_new", counted_read)
        config = make_config(prefix, trim_interval_s=0.01)
        self.reading = ConsumerSet([StreamConsumer(redis, config, Work, self.handle)])
        self.producer = Producer(redis)
        self.task: asyncio.Task[None] | None = None

    async def handle(self, message: Work, delivery: Delivery) -> None:
        self.running += 1
        try:
            if message.n:
                await self.release.wait()
        finally:
            self.running -= 1
        self.done.append(message.n)

    async def __aenter__(self) -> Loop:
        self.task = asyncio.create_task(self.reading.run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release.set()
        self.reading.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)

    async def send(self, *numbers: int) -> None:
        for n in numbers:
            await self.producer.send(self.stream, Work(n=n))

    async def until(self, condition: Any, what: str, timeout: float = 30.0) -> None:
        async def check() -> bool:
            return bool(condition())

        await wait_for(check, what=what, timeout=timeout)


async def test_a_trim_due_while_a_handler_runs_waits_until_it_ends(
    redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumerset, "PERIODIC_DEFER_S", 60.0)  # longer than the test: only the handler's end counts
    async with Loop(redis, prefix, monkeypatch) as loop:
        await loop.send(0)
        await loop.until(lambda: loop.done == [0] and loop.trims, "message 0 handled and trimmed")
        # 1 keeps running; 2 (a 0) ends at once, so a trim is due while 1 runs
        await loop.send(1, 0)
        await loop.until(lambda: loop.done == [0, 0] and loop.running == 1, "message 2 handled, 1 running")
        reads = loop.reads
        # Each pass of the loop checks what is due before its read: two more reads, and the due trim was skipped.
        await loop.until(lambda: loop.reads >= reads + 2, "two more passes of the loop")
        assert [running for _, running in loop.trims] == [0] * len(loop.trims), "a trim ran beside a handler"
        trimmed = len(loop.trims)
        loop.release.set()
        await loop.until(lambda: len(loop.trims) > trimmed, "the trim once message 1 ended")
        assert [running for _, running in loop.trims] == [0] * len(loop.trims)


async def test_a_handler_that_does_not_end_does_not_stop_the_trims(
    redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Loop(redis, prefix, monkeypatch) as loop:
        await loop.send(0)
        await loop.until(lambda: loop.done == [0] and loop.trims, "message 0 handled and trimmed")
        await loop.send(1, 0)
        await loop.until(lambda: loop.done == [0, 0] and loop.running == 1, "message 2 handled, 1 running")
        # The due trim waits at most PERIODIC_DEFER_S for message 1, which never ends here.
        await loop.until(
            lambda: any(running for _, running in loop.trims),
            "a trim while message 1 still runs",
            timeout=consumerset.PERIODIC_DEFER_S + 10,
        )
