"""The per-target coalescing scripts against real Redis: at most one job in flight and one pending."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_reconciler.coalesce import AGAIN, LOST, SENT, UNCHANGED, Coalescer

T = "zone:example.com"


async def test_an_isolated_change_is_planned_at_once_and_later_ones_fold_into_the_next_job(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    assert await co.mark(T, "p1", 1_000) is True
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_001) == SENT
    # Changes while job1 is in flight only set the pending flag, however many there are.
    assert [await co.mark(T, f"p{n}", 1_002 + n) for n in range(2, 50)] == [False] * 48
    assert await redis.xlen(keys.cf_jobs) == 1
    outcome = await co.result(T, "job1", True, "p50", 2_000)
    assert (outcome.current, outcome.plan_again) == (True, True)
    assert await co.commit(T, "p50", "job2", "v2", b"{}", b"[]", 2_001) == SENT
    done = await co.result(T, "job2", True, "p51", 3_000)
    assert (done.current, done.plan_again) == (True, False)
    assert await redis.xlen(keys.cf_jobs) == 2


async def test_an_unchanged_version_sends_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys)
    assert await co.mark(T, "p1", 1_000)
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000) == SENT
    await co.result(T, "job1", True, "x", 1_100)
    assert await co.mark(T, "p2", 1_200)
    assert await co.commit(T, "p2", "job2", "v1", b"{}", b"[]", 1_200) == UNCHANGED
    assert await redis.xlen(keys.cf_jobs) == 1


async def test_stale_results_are_ignored_and_a_redelivered_one_only_updates_statuses(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    await co.mark(T, "p1", 1_000)
    await co.commit(T, "p1", "job1", "v1", b"{}", b'["a.example.com"]', 1_000)
    assert (await co.result(T, "old-job", True, "x", 1_100)).current is False
    first = await co.result(T, "job1", True, "x", 1_100)
    assert (first.current, first.plan_again, first.members) == (True, False, b'["a.example.com"]')
    # The same result again (its first handler died before the rule statuses were written): statuses only.
    again = await co.result(T, "job1", True, "x", 1_200)
    assert (again.current, again.plan_again, again.members) == (True, False, b'["a.example.com"]')
    # Once a later job is sent, the old result is stale.
    assert await co.mark(T, "p2", 1_300)
    assert await co.commit(T, "p2", "job2", "v2", b"{}", b"[]", 1_300) == SENT
    assert (await co.result(T, "job1", True, "x", 1_400)).current is False


async def test_a_plan_abandoned_by_a_dead_replica_is_taken_over_after_the_timeout(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, stale_plan_ms=500)
    assert await co.mark(T, "dead", 1_000)
    assert await co.mark(T, "p2", 1_200) is False
    assert await co.mark(T, "p3", 1_600) is True
    assert await co.commit(T, "dead", "job-dead", "v1", b"{}", b"[]", 1_700) == LOST
    assert await co.commit(T, "p3", "job3", "v1", b"{}", b"[]", 1_700) == SENT


async def test_a_change_during_planning_makes_the_planner_plan_again(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys)
    await co.mark(T, "p1", 1_000)
    await co.mark(T, "p2", 1_001)
    assert await co.commit(T, "p1", "", "", b"", b"[]", 1_002) == AGAIN
    assert await co.commit(T, "p1", "", "", b"", b"[]", 1_003) == UNCHANGED
