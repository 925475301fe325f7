"""The per-target coalescing scripts against real Redis: at most one job in flight and one pending."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.streams.codec import FIELD
from flareport_reconciler.coalesce import Coalescer, Committed

T = "zone:example.com"


async def test_an_isolated_change_is_planned_at_once_and_later_ones_fold_into_the_next_job(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    assert await co.mark(T, "p1", 1_000) is True
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_001) == Committed.SENT
    # Changes while job1 is in flight only set the pending flag, however many there are.
    assert [await co.mark(T, f"p{n}", 1_002 + n) for n in range(2, 50)] == [False] * 48
    assert await redis.xlen(keys.cf_jobs) == 1
    outcome = await co.result(T, "job1", True, "p50", 2_000)
    assert (outcome.current, outcome.plan_again) == (True, True)
    assert await co.commit(T, "p50", "job2", "v2", b"{}", b"[]", 2_001) == Committed.SENT
    done = await co.result(T, "job2", True, "p51", 3_000)
    assert (done.current, done.plan_again) == (True, False)
    assert await redis.xlen(keys.cf_jobs) == 2


async def test_an_unchanged_version_sends_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys)
    assert await co.mark(T, "p1", 1_000)
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
    await co.result(T, "job1", True, "x", 1_100)
    assert await co.mark(T, "p2", 1_200)
    assert await co.commit(T, "p2", "job2", "v1", b"{}", b"[]", 1_200) == Committed.UNCHANGED
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
    assert await co.commit(T, "p2", "job2", "v2", b"{}", b"[]", 1_300) == Committed.SENT
    assert (await co.result(T, "job1", True, "x", 1_400)).current is False


async def test_a_plan_abandoned_by_a_dead_replica_is_taken_over_after_the_timeout(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, stale_plan_ms=500)
    assert await co.mark(T, "dead", 1_000)
    assert await co.mark(T, "p2", 1_200) is False
    assert await co.mark(T, "p3", 1_600) is True
    assert await co.commit(T, "dead", "job-dead", "v1", b"{}", b"[]", 1_700) == Committed.LOST
    assert await co.commit(T, "p3", "job3", "v1", b"{}", b"[]", 1_700) == Committed.SENT


async def test_a_change_during_planning_makes_the_planner_plan_again(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys)
    await co.mark(T, "p1", 1_000)
    await co.mark(T, "p2", 1_001)
    assert await co.commit(T, "p1", "", "", b"", b"[]", 1_002) == Committed.AGAIN
    assert await co.commit(T, "p1", "", "", b"", b"[]", 1_003) == Committed.UNCHANGED


async def test_a_job_goes_to_the_jobs_stream_under_the_codec_field_and_its_target_is_indexed(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    await co.mark(T, "p1", 1_000)
    await co.commit(T, "p1", "job1", "v1", b'{"job": 1}', b"[]", 1_000)

    entries = await redis.xrange(keys.cf_jobs) or []
    assert [fields for _, fields in entries] == [{FIELD: b'{"job": 1}'}], (
        "consumers read the message under the stream codec's field"
    )
    assert await redis.smembers(keys.targets_index) == {T.encode()}


async def test_a_failed_job_forgets_its_version_so_the_same_version_is_sent_again(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    await co.mark(T, "p1", 1_000)
    await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000)
    await co.result(T, "job1", False, "x", 1_100)
    await co.mark(T, "p2", 1_200)
    assert await co.commit(T, "p2", "job2", "v1", b"{}", b"[]", 1_200) == Committed.SENT


async def test_a_forced_mark_sends_an_unchanged_version_and_a_lost_result_frees_the_target_in_time(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, stale_job_ms=1_000)
    await co.mark(T, "p1", 1_000)
    await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000)
    assert await co.mark(T, "p2", 1_999) is False, "a job awaiting its result holds the target"
    assert await co.mark(T, "p3", 2_000, force=True) is True, "a result that never came holds it only so long"
    assert await co.commit(T, "p3", "job3", "v1", b"{}", b"[]", 2_000) == Committed.SENT


async def test_many_targets_are_marked_in_one_round_trip_each_with_its_own_force(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    other = "tunnel:t1"
    await co.mark(T, "p0", 1_000)
    await co.commit(T, "p0", "job0", "v1", b"{}", b"[]", 1_000)

    assert await co.mark_many([T, other], ["p1", "p2"], 1_100, [False, True]) == [False, True]
    assert await co.mark_many([], [], 1_100, []) == []
    assert await redis.hget(keys.target_state(T), "pending") == b"1"
