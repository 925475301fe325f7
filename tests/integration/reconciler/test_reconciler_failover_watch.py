"""The Redis history check and the idle background pass share the stream reading's wake-ups (issue 23: idle must be
idle): an idle replica does them in the wake-up of its reclaim pass instead of on timers of their own, yet never less
often than their intervals."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.streams import ConsumerConfig, ConsumerSet, Delivery, StreamConsumer
from flareport_reconciler import failover
from flareport_reconciler.handlers import Reconciler
from flareport_reconciler.service import Replica
from fptest.messages import Work
from fptest.reconciler_harness import reconciler_settings
from fptest.waiting import wait_for


async def _nothing(message: Work, delivery: Delivery) -> None:
    return None


def _record_checks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    checks: list[float] = []

    async def replication_id(reconciler: Reconciler) -> str | None:
        checks.append(time.monotonic())
        return None  # "no master answering": nothing to swap, the check ends here

    monkeypatch.setattr(failover, "replication_id", replication_id)
    return checks


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def test_an_idle_replica_checks_in_its_reclaim_wake_ups(
    redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = _record_checks(monkeypatch)
    config = ConsumerConfig(
        stream=f"{prefix}events", group="reconciler", consumer="r1", dead_letter_stream=f"{prefix}dead",
        claim_idle_ms=900, claim_interval_s=0.05, claim_interval_max_s=0.3, block_ms=60_000,
    )  # fmt: skip
    reading = ConsumerSet([StreamConsumer(redis, config, Work, _nothing)])
    # The reading's longest sleep a margin shorter than the check interval, as the reconciler's (service.py): Redis
    # ends a blocked read up to 100 ms late.
    watch = failover.Watch(cast(Reconciler, None), interval=0.5)
    wakes: list[float] = []

    def awake(sleeps_s: float) -> None:
        wakes.append(time.monotonic())
        watch.awake(sleeps_s)

    reading.share_wakes(awake)
    tasks = [asyncio.create_task(reading.run()), asyncio.create_task(watch.run())]
    try:
        await wait_for(lambda: _at_least(checks, 12), timeout=20, what="a dozen checks")
    finally:
        reading.stop()
        watch.stop()
        await asyncio.gather(*tasks)
    steady = checks[4:]  # once the reclaim interval has grown to its longest (0.05 s doubling to 0.3 s)
    gaps = [b - a for a, b in itertools.pairwise(steady)]
    assert max(gaps) <= 0.5 + 0.05, f"checks stay at most an interval apart: {gaps}"
    own = [c for c in steady if not any(0 <= c - w <= 0.02 for w in wakes)]
    assert not own, f"{len(own)} of {len(steady)} checks woke on their own timer instead of the reading's wake-ups"


async def test_without_another_loop_the_watch_checks_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = _record_checks(monkeypatch)
    watch = failover.Watch(cast(Reconciler, None), interval=0.1)
    task = asyncio.create_task(watch.run())
    try:
        await wait_for(lambda: _at_least(checks, 6), timeout=10, what="six checks on the watch's own timer")
    finally:
        watch.stop()
        await asyncio.wait_for(task, timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(checks)]
    assert all(0.09 <= gap <= 0.2 for gap in gaps), f"one check per interval: {gaps}"


async def test_an_idle_replicas_background_passes_run_in_its_reading_wake_ups(
    redis_server: LocalRedis, redis: aioredis.Redis, prefix: str
) -> None:
    # Reading wakes about every 0.75 s (claim interval); an idle background pass is due 8 sweep intervals (1.2 s)
    # after the last: between one and two of the reading's sleeps, as the reconciler's 9.5 s and 16 s.
    settings = reconciler_settings(redis_server.url, prefix, claim_idle_seconds=1.5, sweep_interval_seconds=0.15)
    replica = Replica(redis, settings, "r1")
    passes: list[float] = []
    wakes: list[float] = []
    pass_once = replica.background.pass_once

    async def recorded() -> Any:
        passes.append(time.monotonic())
        return await pass_once()

    replica.background.pass_once = recorded  # type: ignore[method-assign]
    replica.reading.share_wakes(lambda sleeps_s: wakes.append(time.monotonic()))
    task = asyncio.create_task(replica.run())
    try:
        await wait_for(lambda: _at_least(passes, 8), timeout=30, what="eight background passes")
    finally:
        replica.stop()
        await asyncio.wait_for(task, timeout=15)
    steady = passes[3:]  # once the reading's interval has grown to its longest
    gaps = [b - a for a, b in itertools.pairwise(steady)]
    assert max(gaps) <= 1.2 + 0.1, f"idle passes stay at most 8 sweep intervals apart: {gaps}"
    own = [p for p in steady if not any(0 <= p - w <= 0.02 for w in wakes)]
    assert not own, f"{len(own)} of {len(steady)} idle passes woke on their own timer instead of the reading's"
