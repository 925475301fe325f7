"""The stream runtime against a real redis-server: acks, retries, reclaim, dead letters, stop, Redis restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from flareport_cli.localredis import LocalRedis
from flareport_common.errors import PermanentError, TemporaryError
from flareport_common.messages import DeadLetter
from flareport_common.streams import ConsumerConfig, Delivery, Producer, StreamConsumer
from flareport_common.streams.codec import encode
from fptest.messages import Work
from fptest.waiting import already, wait_for

TESTS = Path(__file__).parents[1]
WorkHandler = Callable[[Work, Delivery], Awaitable[None]]


def make_config(prefix: str, consumer: str = "c1", **overrides: Any) -> ConsumerConfig:
    settings: dict[str, Any] = {
        "stream": f"{prefix}work",
        "group": "workers",
        "consumer": consumer,
        "dead_letter_stream": f"{prefix}dead",
        "block_ms": 50,
        "claim_idle_ms": 60_000,
        "claim_interval_s": 0.05,
        "max_deliveries": 3,
    }
    settings.update(overrides)
    return ConsumerConfig(**settings)


def consumer(redis: aioredis.Redis, config: ConsumerConfig, handler: WorkHandler, **kw: Any) -> StreamConsumer[Work]:
    return StreamConsumer(redis, config, Work, handler, **kw)


async def pending_count(redis: aioredis.Redis, config: ConsumerConfig) -> int:
    summary = await redis.xpending(config.stream, config.group)
    return int(summary["pending"])


async def dead_letters(redis: aioredis.Redis, config: ConsumerConfig) -> list[DeadLetter]:
    entries: Any = await redis.xrange(config.dead_letter_stream)
    return [msgspec.json.decode(fields[b"m"], type=DeadLetter) for _, fields in entries]


@contextlib.asynccontextmanager
async def running(runtime: StreamConsumer[Work]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runtime.run())
    try:
        yield task
    finally:
        runtime.stop()
        await asyncio.wait_for(task, timeout=15)


async def test_every_message_is_handled_once_and_acked(redis: aioredis.Redis, prefix: str) -> None:
    config = make_config(prefix)
    seen: list[int] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        seen.append(message.n)

    await Producer(redis).send_many(config.stream, [Work(n=i) for i in range(250)])
    done = await consumer(redis, config, handle).run_burst()
    assert done == 250
    assert sorted(seen) == list(range(250)), "each message should reach the handler exactly once"
    assert await pending_count(redis, config) == 0, "all handled messages should be acknowledged"


async def test_burst_drains_everything_when_handlers_are_slower_than_reads(redis: aioredis.Redis, prefix: str) -> None:
    config = make_config(prefix, concurrency=4, count=2)
    seen: list[int] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        await asyncio.sleep(0.06)  # longer than a read wait: every slot stays busy between reads
        seen.append(message.n)

    await Producer(redis).send_many(config.stream, [Work(n=i) for i in range(20)])
    assert await consumer(redis, config, handle).run_burst() == 20
    assert sorted(seen) == list(range(20)), "a busy consumer must not take its full slots for an empty stream"


async def test_nothing_is_acked_before_the_handler_succeeds(redis: aioredis.Redis, prefix: str) -> None:
    config = make_config(prefix)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def handle(message: Work, delivery: Delivery) -> None:
        entered.set()
        await release.wait()

    await Producer(redis).send(config.stream, Work(n=1))
    runtime = consumer(redis, config, handle)
    async with running(runtime):
        await asyncio.wait_for(entered.wait(), timeout=10)
        assert await pending_count(redis, config) == 1, "a message in a running handler must still be pending"
        release.set()
        await wait_for(lambda: _is_zero(pending_count(redis, config)), what="ack after the handler returned")


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def test_crashed_process_leaves_message_pending_and_another_consumer_completes_it(
    redis: aioredis.Redis, redis_server: LocalRedis, prefix: str
) -> None:
    config = make_config(prefix, consumer="survivor", claim_idle_ms=300)
    await Producer(redis).send(config.stream, Work(n=7))
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fptest.streamproc", redis_server.url, config.stream, config.group, "doomed", "crash"],
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        timeout=60,
        check=False,
    )
    assert crashed.returncode == 3, "the worker process should have died inside its handler"
    pending = await redis.xpending_range(config.stream, config.group, "-", "+", 10)
    assert [row["consumer"] for row in pending] == [b"doomed"], "the crashed consumer's message must stay pending"

    handled: list[tuple[int, int]] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        handled.append((message.n, delivery.deliveries))

    runtime = consumer(redis, config, handle)
    async with running(runtime):
        await wait_for(lambda: _is_zero(pending_count(redis, config)), what="the reclaimed message to be acked")
    assert handled == [(7, 2)], "the survivor should reclaim the message once, as its second delivery"


async def test_temporary_errors_are_retried_with_the_delivery_count(redis: aioredis.Redis, prefix: str) -> None:
    config = make_config(prefix, max_deliveries=5)
    attempts: list[int] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        if len(attempts) < 3:
            raise TemporaryError("dependency down", delay=0.01)

    await Producer(redis).send(config.stream, Work(n=1))
    await consumer(redis, config, handle).run_burst()
    assert attempts == [1, 2, 3], "each retry should be a new delivery counted by Redis"
    assert await pending_count(redis, config) == 0
    assert await dead_letters(redis, config) == []


async def test_dead_letters_keep_the_original_and_the_reason(redis: aioredis.Redis, prefix: str) -> None:
    config = make_config(prefix, max_deliveries=3)

    async def handle(message: Work, delivery: Delivery) -> None:
        if message.n == 1:
            raise PermanentError("hostname 'bad..name' is invalid")
        if message.n == 2:
            raise TemporaryError("always failing", delay=0.01)
        if message.n == 3:
            raise ValueError("a bug")

    producer = Producer(redis)
    for n in (1, 2, 3, 4):
        await producer.send(config.stream, Work(n=n))
    await redis.xadd(config.stream, {"m": b"{not json"})
    await redis.xadd(config.stream, {"other": b"x"})
    await consumer(redis, config, handle).run_burst()

    letters = await dead_letters(redis, config)
    by_reason = {(letter.reason, letter.error.split(":")[0]): letter for letter in letters}
    assert len(letters) == 5, f"four failures and the two malformed entries minus one success: {letters}"
    permanent = by_reason[("permanent_error", "hostname 'bad..name' is invalid")]
    assert msgspec.json.decode(permanent.payload["m"], type=Work).n == 1
    assert permanent.deliveries == 1
    assert permanent.source_stream == config.stream
    capped = [letter for letter in letters if letter.reason == "delivery_cap"]
    assert sorted(letter.deliveries for letter in capped) == [3, 3], "retried until the cap, then dead-lettered"
    assert any("ValueError" in letter.error for letter in capped), "unexpected exceptions name their type"
    undecodable = [letter for letter in letters if letter.reason == "undecodable"]
    assert sorted(letter.payload.get("m", letter.payload.get("other", "")) for letter in undecodable) == [
        "x",
        "{not json",
    ]
    assert await pending_count(redis, config) == 0, "dead-lettered messages are acknowledged, not left pending"


async def test_message_past_the_delivery_cap_is_dead_lettered_without_handling(
    redis: aioredis.Redis, prefix: str
) -> None:
    config = make_config(prefix, max_deliveries=2)
    await Producer(redis).send(config.stream, Work(n=9))
    await redis.xgroup_create(config.stream, config.group, id="0")
    # Three consumers took it and died (a poison message that kills its process).
    await redis.xreadgroup(config.group, "a", {config.stream: ">"})
    for name in ("b", "c"):
        await redis.xautoclaim(config.stream, config.group, name, 0, "0-0")
    calls: list[int] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        calls.append(message.n)

    await consumer(redis, config, handle).run_burst(claim_idle_ms=0)
    assert calls == [], "a message that already crashed consumers past the cap must not run again"
    [letter] = await dead_letters(redis, config)
    assert letter.reason == "delivery_cap"
    assert letter.deliveries >= 3


async def test_slow_handler_is_kept_alive_and_not_reclaimed(redis: aioredis.Redis, prefix: str) -> None:
    idle_ms = 300
    calls: list[str] = []
    release = asyncio.Event()

    def recorder(name: str) -> WorkHandler:
        async def handle(message: Work, delivery: Delivery) -> None:
            calls.append(name)
            await release.wait()

        return handle

    await Producer(redis).send(f"{prefix}work", Work(n=1))
    slow = consumer(redis, make_config(prefix, "slow", claim_idle_ms=idle_ms), recorder("slow"))
    other = consumer(redis, make_config(prefix, "other", claim_idle_ms=idle_ms), recorder("other"))
    async with running(slow):
        await wait_for(lambda: already(bool(calls)), what="the slow consumer to start")
        async with running(other):
            # Three idle timeouts pass while the slow handler runs; its keepalive must hold the message.
            deadline = asyncio.get_running_loop().time() + 3 * idle_ms / 1000
            while asyncio.get_running_loop().time() < deadline:
                rows = await redis.xpending_range(f"{prefix}work", "workers", "-", "+", 10)
                assert [r["consumer"] for r in rows] == [b"slow"], "the running message must stay with its consumer"
                await asyncio.sleep(0.05)
            release.set()
            await wait_for(lambda: _is_zero(pending_count(redis, slow.config)), what="ack")
    assert calls == ["slow"], "no other consumer may run a message whose handler is still working"


async def test_handlers_of_one_key_never_overlap(redis: aioredis.Redis, prefix: str) -> None:
    config = make_config(prefix, concurrency=16)
    active: dict[str, int] = {}
    overlaps: list[str] = []
    order: dict[str, list[int]] = {}

    async def handle(message: Work, delivery: Delivery) -> None:
        active[message.key] = active.get(message.key, 0) + 1
        if active[message.key] > 1:
            overlaps.append(message.key)
        order.setdefault(message.key, []).append(message.n)
        await asyncio.sleep(0.001)  # yield so overlapping handlers would interleave
        active[message.key] -= 1

    await Producer(redis).send_many(config.stream, [Work(n=i, key=f"agent-{i % 3}") for i in range(60)])
    await consumer(redis, config, handle, key=lambda m: m.key).run_burst()
    assert overlaps == []
    assert all(ns == sorted(ns) for ns in order.values()), "one key's messages run in stream order"


def _start_proc(
    redis_server: LocalRedis, config: ConsumerConfig, handler_s: float, grace_s: float
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "fptest.streamproc", redis_server.url, config.stream, config.group,
            "proc", "slow", str(handler_s), str(grace_s),
        ],
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip


async def _log_has(redis: aioredis.Redis, config: ConsumerConfig, prefix: str) -> bool:
    entries: list[Any] = await redis.lrange(f"{config.stream}:log", 0, -1)
    return any(e.decode().startswith(prefix) for e in entries)


@pytest.mark.parametrize(
    ("handler_s", "grace_s", "finished"),
    [(0.5, 10.0, True), (30.0, 0.3, False)],
    ids=["finishes-within-grace", "grace-runs-out"],
)
async def test_sigterm_with_a_message_in_flight(
    redis: aioredis.Redis, redis_server: LocalRedis, prefix: str, handler_s: float, grace_s: float, finished: bool
) -> None:
    config = make_config(prefix)
    proc = _start_proc(redis_server, config, handler_s, grace_s)
    try:
        await wait_for(lambda: _log_has(redis, config, "ready"), what="the consumer process to start")
        await Producer(redis).send(config.stream, Work(n=5))
        await wait_for(lambda: _log_has(redis, config, "started:5"), what="the handler to start")
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert returncode == 0, "SIGTERM is a clean stop, not a crash"
    assert await _log_has(redis, config, "exited"), "run() should return after a stop"
    assert await _log_has(redis, config, "done:5") is finished
    assert await pending_count(redis, config) == (0 if finished else 1), (
        "a handler finished within the grace period is acked; one cut short stays pending for another replica"
    )
    if not finished:
        recovered: list[int] = []

        async def handle(message: Work, delivery: Delivery) -> None:
            recovered.append(message.n)

        await consumer(redis, make_config(prefix, "next"), handle).run_burst(claim_idle_ms=0)
        assert recovered == [5]


async def test_consumer_survives_redis_restart(redis_factory: Callable[..., LocalRedis], prefix: str) -> None:
    server = redis_factory(aof=True)
    client = aioredis.Redis.from_url(server.url)
    config = make_config(prefix)
    seen: set[int] = set()

    async def handle(message: Work, delivery: Delivery) -> None:
        seen.add(message.n)

    producer = Producer(client)
    runtime = consumer(client, config, handle)
    try:
        async with running(runtime) as task:
            await producer.send_many(config.stream, [Work(n=i) for i in range(50)])
            await wait_for(lambda: already(len(seen) == 50), what="the first 50 messages")
            await asyncio.to_thread(server.restart, kill=True)

            async def sent() -> bool:
                try:  # the first command after the restart may meet a dead pooled connection
                    await producer.send_many(config.stream, [Work(n=i) for i in range(50, 100)])
                except RedisConnectionError:
                    return False
                return True

            await wait_for(sent, what="the second half accepted by the restarted Redis")
            await wait_for(lambda: already(len(seen) == 100), timeout=30, what="messages sent after the restart")
            assert not task.done(), "the consumer loop must keep running through a Redis restart"
    finally:
        await client.aclose()
    assert seen == set(range(100))


async def test_consumer_recreates_its_group_after_redis_lost_its_data(
    redis_factory: Callable[..., LocalRedis], prefix: str
) -> None:
    server = redis_factory(aof=False)
    client = aioredis.Redis.from_url(server.url)
    config = make_config(prefix)
    seen: set[int] = set()

    async def handle(message: Work, delivery: Delivery) -> None:
        seen.add(message.n)

    runtime = consumer(client, config, handle)
    try:
        async with running(runtime) as task:
            await Producer(client).send(config.stream, Work(n=1))
            await wait_for(lambda: already(seen == {1}), what="the first message")
            await asyncio.to_thread(server.restart)  # no persistence: stream and group are gone

            # Whether the consumer recreates its group before or after this XADD, the group is created at "0",
            # so the message is delivered either way.
            async def sent() -> bool:
                # The client's pooled connection died with the server: the first command may fail, a retry reconnects.
                try:
                    await Producer(client).send(config.stream, Work(n=2))
                except RedisConnectionError:
                    return False
                return True

            await wait_for(sent, what="a message accepted by the restarted Redis")
            await wait_for(lambda: already(2 in seen), timeout=30, what="a message sent after the data loss")
            assert not task.done()
    finally:
        await client.aclose()


async def test_consumer_survives_a_flushall_while_it_is_blocked_reading(
    redis_factory: Callable[..., LocalRedis], prefix: str
) -> None:
    server = redis_factory(aof=False)
    client = aioredis.Redis.from_url(server.url)
    admin = aioredis.Redis.from_url(server.url)
    config = make_config(prefix, block_ms=5_000)
    seen: set[int] = set()

    async def handle(message: Work, delivery: Delivery) -> None:
        seen.add(message.n)

    async def blocked_in_xreadgroup() -> bool:
        clients = await admin.client_list()
        return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients)

    runtime = consumer(client, config, handle)
    try:
        async with running(runtime) as task:
            await Producer(client).send(config.stream, Work(n=1))
            await wait_for(lambda: already(seen == {1}), what="the first message")
            await wait_for(blocked_in_xreadgroup, what="the consumer blocked in XREADGROUP")
            # Redis answers the blocked read "UNBLOCKED the stream key no longer exists".
            await admin.flushall()
            await Producer(admin).send(config.stream, Work(n=2))
            await wait_for(lambda: already(2 in seen), timeout=30, what="a message sent after the FLUSHALL")
            assert not task.done(), "the consumer kept running"
    finally:
        await client.aclose()
        await admin.aclose()


async def test_an_idle_consumer_blocks_long_and_stop_ends_the_blocked_read_at_once(
    redis_server: LocalRedis, prefix: str
) -> None:
    # No read timeout on this client, so the read may block the whole minute it asks for.
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=None)
    admin = aioredis.Redis.from_url(redis_server.url)
    config = make_config(prefix, block_ms=60_000, claim_interval_s=60.0)
    runtime = consumer(client, config, lambda message, delivery: asyncio.sleep(0))

    async def blocked_in_xreadgroup() -> bool:
        clients = await admin.client_list()
        return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients)

    task = asyncio.create_task(runtime.run())
    try:
        await wait_for(blocked_in_xreadgroup, what="the consumer blocked in XREADGROUP")
        runtime.stop()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "stop() should end a read blocked for a minute, not wait for it"
        assert await pending_count(admin, config) == 0, "nothing was delivered, so nothing is left pending"
    finally:
        if not task.done():
            task.cancel()
        await client.aclose()
        await admin.aclose()


async def test_an_idle_consumer_reclaims_less_often_yet_takes_over_a_dead_consumers_message_in_time(
    redis_factory: Callable[..., LocalRedis], prefix: str
) -> None:
    # Its own server: the test counts the XAUTOCLAIMs Redis answered.
    server = redis_factory(aof=False)
    client = aioredis.Redis.from_url(server.url)
    # A reclaim every 50 ms at first; while they find nothing the interval doubles, up to a third of the idle time.
    config = make_config(prefix, consumer="live", claim_idle_ms=1_200, claim_interval_s=0.05)
    assert config.longest_claim_interval_s == 0.4
    handled: list[tuple[int, float]] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        handled.append((message.n, time.monotonic()))

    async def reclaims() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_xautoclaim", {}).get("calls", 0))

    try:
        async with running(consumer(client, config, handle)):
            await wait_for(lambda: _positive(reclaims()), what="the consumer's first reclaim")
            before, began = await reclaims(), time.monotonic()
            await asyncio.sleep(2.0)  # a window to count in, not a wait for something to happen
            counted = await reclaims() - before
            at_base_pace = (time.monotonic() - began) / config.claim_interval_s
            assert counted <= 12, f"an idle consumer reclaimed {counted} times in 2 s (at 50 ms: {at_base_pace:.0f})"

            # A consumer takes a message and dies: the live one, backed off, takes it over within the bound. Added and
            # delivered in one transaction, so the live consumer's blocked read never sees it as new.
            pipe = client.pipeline(transaction=True)
            pipe.xadd(config.stream, encode(Work(n=9)))  # type: ignore[arg-type]
            pipe.xreadgroup(config.group, "dead", {config.stream: ">"}, count=1)
            await pipe.execute()
            delivered = time.monotonic()
            bound = config.claim_idle_ms / 1000 + config.longest_claim_interval_s
            await wait_for(lambda: already(bool(handled)), timeout=bound + 5, what="the dead consumer's message")
            took = handled[0][1] - delivered
            assert handled[0][0] == 9
            assert 1.2 <= took <= bound + 1.0, f"taken over {took:.2f} s after its delivery (bound {bound:.2f} s)"
    finally:
        await client.aclose()


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def test_a_consumer_whose_handlers_finished_keeps_no_timer_until_the_next_read(
    redis: aioredis.Redis, prefix: str
) -> None:
    # Keep-alive every second; reclaims and the read's block a minute away. Once the message is handled, nothing
    # should wake the idle consumer within the next few seconds (the keep-alive woke once more, to find nothing).
    config = make_config(prefix, claim_idle_ms=3_000, claim_interval_s=60.0, block_ms=60_000)
    handled: list[int] = []

    async def handle(message: Work, delivery: Delivery) -> None:
        handled.append(message.n)

    loop = asyncio.get_running_loop()

    async def done() -> bool:
        return bool(handled) and await pending_count(redis, config) == 0

    async with running(consumer(redis, config, handle)):
        await Producer(redis).send(config.stream, Work(n=1))
        await wait_for(done, timeout=10, what="the message handled and acknowledged")
        soon = loop.time() + 5.0
        scheduled = [h for h in loop._scheduled if not h.cancelled() and h.when() < soon]  # type: ignore[attr-defined]
        assert not scheduled, f"nothing should wake the idle consumer within 5 s: {scheduled}"
