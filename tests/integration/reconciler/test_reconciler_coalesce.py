"""The per-target coalescing scripts against real Redis: at most one job in flight and one pending."""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import VerifyTarget
from flareport_common.messages.cfjobs import CfJobMessage
from flareport_common.streams.codec import FIELD
from flareport_reconciler.coalesce import Coalescer, Committed, Run, Window
from flareport_reconciler.emit import Emitter
from flareport_reconciler.targets import Target

decode_job = msgspec.json.Decoder(CfJobMessage).decode

T = "zone:example.com"


async def test_an_isolated_change_is_planned_at_once_and_later_ones_fold_into_the_next_job(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    assert await co.mark(T, "p1", 1_000) == 0
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_001) == Committed.SENT
    # Changes while job1 is in flight only set the pending flag, however many there are.
    assert [await co.mark(T, f"p{n}", 1_002 + n) for n in range(2, 50)] == [None] * 48
    assert await redis.xlen(keys.cf_jobs_zones) == 1
    outcome = await co.result(T, "job1", True, "p50", 2_000)
    assert (outcome.current, outcome.plan_again) == (True, True)
    assert await co.commit(T, "p50", "job2", "v2", b"{}", b"[]", 2_001) == Committed.SENT
    done = await co.result(T, "job2", True, "p51", 3_000)
    assert (done.current, done.plan_again) == (True, False)
    assert await redis.xlen(keys.cf_jobs_zones) == 2


async def test_an_unchanged_version_sends_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys)
    assert await co.mark(T, "p1", 1_000) == 0
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
    await co.result(T, "job1", True, "x", 1_100)
    assert await co.mark(T, "p2", 1_200) == 0
    assert await co.commit(T, "p2", "job2", "v1", b"{}", b"[]", 1_200) == Committed.UNCHANGED
    assert await redis.xlen(keys.cf_jobs_zones) == 1


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
    assert await co.mark(T, "p2", 1_300) == 0
    assert await co.commit(T, "p2", "job2", "v2", b"{}", b"[]", 1_300) == Committed.SENT
    assert (await co.result(T, "job1", True, "x", 1_400)).current is False


async def test_a_plan_abandoned_by_a_dead_replica_is_taken_over_after_the_timeout(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, stale_plan_ms=500)
    assert await co.mark(T, "dead", 1_000) == 0
    assert await co.mark(T, "p2", 1_200) is None
    assert await co.mark(T, "p3", 1_600) == 0
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

    entries = await redis.xrange(keys.cf_jobs_zones) or []
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
    assert await co.mark(T, "p2", 1_999) is None, "a job awaiting its result holds the target"
    assert await co.mark(T, "p3", 2_000, force=True) == 0, "a result that never came holds it only so long"
    assert await co.commit(T, "p3", "job3", "v1", b"{}", b"[]", 2_000) == Committed.SENT


async def test_many_targets_are_marked_in_one_round_trip_each_with_its_own_force(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    other = "tunnel:t1"
    await co.mark(T, "p0", 1_000)
    await co.commit(T, "p0", "job0", "v1", b"{}", b"[]", 1_000)

    assert await co.mark_many([T, other], ["p1", "p2"], 1_100, [False, True]) == [None, 0]
    assert await co.mark_many([], [], 1_100, []) == []
    assert await redis.hget(keys.target_state(T), "pending") == b"1"


# ---- the window -----------------------------------------------------------------------------------------------

WINDOW = Window(base_ms=300, max_ms=5_000, burst_weight=50)


async def _write(co: Coalescer, token: str, job: str, version: str, at: int, done: int) -> None:
    """One whole round on an idle target: taken at once, a job sent at ``at``, its result at ``done``."""
    assert await co.mark(T, token, at) == 0
    assert await co.commit(T, token, job, version, b"{}", b"[]", at) == Committed.SENT
    await co.result(T, job, True, "unused", done)


async def test_a_change_soon_after_a_write_waits_for_the_window_and_later_ones_fold_into_it(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    await _write(co, "p1", "job1", "v1", 1_000, 1_050)
    # 100 ms after the write: held until the window ends (1_050 + 300).
    assert await co.mark(T, "p2", 1_150) == 200
    assert await co.overdue(10_000, 10) == [T], "a held target is findable should its replica die"
    assert [await co.mark(T, f"q{n}", 1_200 + n) for n in range(5)] == [None] * 5, "folded into the held plan"
    # Due at 1_350, but the last change came at 1_204: still arriving, so the hold lasts a window after it.
    assert await co.begin(T, "p2", 1_350) == 154
    assert await co.overdue(1_503, 10) == [], "the extended hold is due at 1_504"
    assert await co.begin(T, "p2", 1_504) == 0, "quiet for a window: planned now"
    assert await redis.hget(keys.target_state(T), "pending") is None, "what waited is read by this plan"
    assert await co.commit(T, "p2", "job2", "v2", b"{}", b"[]", 1_504) == Committed.SENT
    assert await co.overdue(10_000, 10) == []
    assert await redis.xlen(keys.cf_jobs_zones) == 2, "six changes after the first write cost one job"


async def test_a_change_on_a_quiet_target_is_planned_at_once_even_with_a_window(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    assert await co.mark(T, "p1", 1_000) == 0, "never written: no waiting"
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
    await co.result(T, "job1", True, "unused", 1_020)
    assert await co.mark(T, "p2", 1_020 + 301) == 0, "written longer than a window ago: no waiting"


async def test_a_burst_waits_one_window_even_on_a_quiet_target_and_the_bound_holds(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    assert await co.mark(T, "p1", 1_000, weight=50) == 300
    assert await co.mark_many([T], ["p2"], 1_001, [False]) == [None]
    # Under a scarce budget the window grows fourfold, never past its bound.
    bounded = Coalescer(redis, keys, window=Window(base_ms=2_000, max_ms=5_000, burst_weight=1))
    assert await bounded.mark("zone:other.example", "p3", 1_000, pressure=4) == 5_000


@pytest.mark.parametrize(
    ("done", "writes", "window"),
    [
        # The job took 400 ms for one write: the window is five times that (Cloudflare is slow, each job costs more).
        (1_400, 1, 2_000),
        # 2 s for 20 DNS batches is 100 ms per write: Cloudflare answered fast, the job was large. Five times its whole
        # duration (10 s, the 5 s bound) would hold the hostnames that came meanwhile to save one part-filled batch.
        (3_000, 20, 500),
    ],
)
async def test_a_pending_change_after_a_result_waits_for_a_window_that_a_slow_write_widens(
    redis: aioredis.Redis, keys: Keys, done: int, writes: int, window: int
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    assert await co.mark(T, "p1", 1_000) == 0
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
    assert await co.mark(T, "p2", done) is None, "a change just as the result comes: a whole window follows it"
    outcome = await co.result(T, "job1", True, "p3", done, writes=writes)
    assert (outcome.plan_again, outcome.delay_ms) == (True, window)
    assert await co.overdue(done + window, 10) == [T]


async def test_changes_that_came_while_a_job_waited_its_turn_go_a_window_after_the_newest_not_after_the_result(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """A zone's job queued behind a spent rate budget for seconds: the hostnames that came meanwhile are planned a
    window after the last of them, at once if that is past, not held a whole window more (the 20,000-hostname bench
    ended seconds late that way)."""
    co = Coalescer(redis, keys, window=WINDOW)
    for target, last_change, result_at, delay in ((T, 1_100, 6_000, 0), ("zone:other.example", 5_900, 6_000, 200)):
        assert await co.mark(target, "p1", 1_000) == 0
        assert await co.commit(target, "p1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
        assert await co.mark(target, "p2", last_change) is None
        outcome = await co.result(target, "job1", True, "p3", result_at, cloudflare_ms=20)
        assert (outcome.plan_again, outcome.delay_ms) == (True, delay), target
        # Planned when due: no change since, so nothing extends the hold.
        assert await co.begin(target, "p3", result_at + delay) == 0
        assert await co.commit(target, "p3", "job2", "v2", b"{}", b"[]", result_at + delay) == Committed.SENT
    # Under a short budget the window is four times as long, and so is the wait after the newest change.
    scarce = "zone:scarce.example"
    assert await co.mark(scarce, "s1", 1_000) == 0
    assert await co.commit(scarce, "s1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
    assert await co.mark(scarce, "s2", 5_900) is None
    outcome = await co.result(scarce, "job1", True, "s3", 6_000, pressure=4, cloudflare_ms=20)
    assert (outcome.plan_again, outcome.delay_ms) == (True, 1_100)


async def test_a_held_plan_whose_replica_died_is_overdue_then_taken_over(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys, stale_plan_ms=500, window=WINDOW)
    await _write(co, "p1", "job1", "v1", 1_000, 1_000)
    assert await co.mark(T, "dead", 1_100) == 200, "held until 1_300 by a replica that then dies"
    assert await co.overdue(1_300 + 499 - 500, 10) == [], "not overdue before its window ended"
    assert await co.mark(T, "early", 1_700) is None, "still held within stale_plan_ms of its due time"
    assert await co.mark(T, "sweeper", 1_801) == 0, "taken over once stale"
    assert await co.begin(T, "dead", 1_802) is None, "the dead replica's plan, should it wake, is lost"
    assert await co.commit(T, "sweeper", "job2", "v2", b"{}", b"[]", 1_802) == Committed.SENT


async def test_no_window_when_its_bound_is_zero(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys, window=Window(base_ms=300, max_ms=0))
    await _write(co, "p1", "job1", "v1", 1_000, 1_010)
    assert await co.mark(T, "p2", 1_020, weight=10_000) == 0


async def test_changes_that_keep_coming_extend_a_hold_up_to_its_bound_and_a_stopping_replica_plans_at_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=Window(base_ms=300, max_ms=1_000, burst_weight=50))
    await _write(co, "p1", "job1", "v1", 1_000, 1_000)
    assert await co.mark(T, "p2", 1_100) == 200, "held from 1_100 until 1_300"
    now = 1_100
    for step in range(1, 12):  # a container every 120 ms, each folded into the held plan
        now = 1_100 + 120 * step
        assert await co.mark(T, f"c{step}", now) is None
    # At 2_420 the hold began 1_320 ms ago: past its 1_000 ms bound, so planned although changes still arrive.
    assert await co.begin(T, "p2", now) == 0
    assert await co.commit(T, "p2", "job2", "v2", b"{}", b"[]", now) == Committed.SENT

    other = "zone:other.example"
    await co.mark(other, "o1", 5_000)
    await co.commit(other, "o1", "job-o1", "v1", b"{}", b"[]", 5_000)
    await co.result(other, "job-o1", True, "unused", 5_000)
    assert await co.mark(other, "o2", 5_100) == 200
    assert await co.mark(other, "o3", 5_250) is None
    assert await co.begin(other, "o2", 5_300, extend=False) == 0, "a stopping replica does not wait for more"


async def test_a_run_its_agent_announced_waits_and_its_end_is_planned_at_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    # Containers created and not yet started: more starts are coming, so even a quiet target waits a window.
    assert await co.mark(T, "p1", 1_000, run=Run.MORE) == 300
    assert await co.mark(T, "p2", 1_250, run=Run.MORE) is None, "folded into the held plan"
    assert await co.begin(T, "p1", 1_300) == 250, "still arriving: extended"
    # The agent has nothing left to start: the run is complete, the held plan goes now, in this caller's hands.
    assert await co.mark(T, "p3", 1_400, run=Run.ENDED) == 0
    assert await co.overdue(10_000, 10) == [], "no longer waiting for its window"
    assert await co.begin(T, "p1", 1_550) is None, "the replica that held it finds the target taken over"
    assert await co.commit(T, "p3", "job1", "v1", b"{}", b"[]", 1_400) == Committed.SENT
    assert await redis.xlen(keys.cf_jobs_zones) == 1, "the whole run in one job"


async def test_the_end_of_a_run_does_not_cut_a_window_nobody_announced(redis: aioredis.Redis, keys: Keys) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    await _write(co, "p1", "job1", "v1", 1_000, 1_000)
    # Written moments ago: held for the window (containers started one after another, no creates announced).
    assert await co.mark(T, "p2", 1_100, run=Run.ENDED) == 200
    assert await co.mark(T, "p3", 1_200, run=Run.ENDED) is None, "folded in, the window stays"
    assert await co.overdue(10_000, 10) == [T]


async def test_the_end_of_a_run_that_arrives_during_a_job_is_planned_a_window_after_the_job_was_sent(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    assert await co.mark(T, "p1", 1_000, run=Run.MORE) == 300
    assert await co.begin(T, "p1", 1_300) == 0
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_300) == Committed.SENT
    assert await co.mark(T, "p2", 1_310, run=Run.MORE) is None
    assert await co.mark(T, "p3", 1_320, run=Run.ENDED) is None
    # The job waited its turn for 200 ms (Cloudflare answered in 20): the rest of the run goes a window after the
    # job was sent, not a whole window after its result.
    outcome = await co.result(T, "job1", True, "p4", 1_500, cloudflare_ms=20)
    assert (outcome.plan_again, outcome.delay_ms) == (True, 100)
    # Without the end (more still coming), the pending change waits for the window as before.
    other = "zone:other.example"
    await co.mark(other, "o1", 1_000)
    await co.commit(other, "o1", "job-o1", "v1", b"{}", b"[]", 1_000)
    assert await co.mark(other, "o2", 1_200, run=Run.MORE) is None
    assert (await co.result(other, "job-o1", True, "o3", 1_200, cloudflare_ms=20)).delay_ms == 300


async def test_the_end_of_a_run_folds_anyway_when_the_budget_is_short_cloudflare_slow_or_the_last_job_recent(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=Window(base_ms=300, max_ms=5_000, burst_weight=50))
    assert await co.mark(T, "p1", 1_000, run=Run.MORE) == 300
    assert await co.mark(T, "p2", 1_100, run=Run.ENDED, pressure=2) is None, "a short budget: still folded"
    assert await co.overdue(10_000, 10) == [T]
    # The last job took 200 ms for its one write: each job costs real time, the run folds into the window's job.
    slow = "zone:slow.example"
    assert await co.mark(slow, "s1", 1_000) == 0
    assert await co.commit(slow, "s1", "job-s1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
    await co.result(slow, "job-s1", True, "unused", 1_200)
    assert await co.mark(slow, "s2", 5_000, run=Run.NEXT) == 1_000
    assert await co.mark(slow, "s3", 5_100, run=Run.ENDED) is None, "slow: a run of single containers still folds"
    # Several containers were waiting to start (docker compose up): the run is all there when it ends.
    assert await co.begin(slow, "s2", 6_100) == 0
    assert await co.commit(slow, "s2", "job-s2", "v2", b"{}", b"[]", 6_100) == Committed.SENT
    await co.result(slow, "job-s2", True, "unused", 6_300)
    assert await co.mark(slow, "s4", 8_000, run=Run.MORE) == 1_000
    assert await co.mark(slow, "s5", 8_100, run=Run.NEXT) is None
    assert await co.mark(slow, "s6", 8_200, run=Run.ENDED) == 0
    # Its last job was sent less than a window ago: an agent announcing and ending runs over and over gets no job
    # per change, only what a change every window would get.
    recent = "zone:recent.example"
    await _write_at(co, recent, "r1", 10_000)
    assert await co.mark(recent, "m", 10_100, run=Run.MORE) == 300
    assert await co.mark(recent, "e", 10_150, run=Run.ENDED) is None, "a window after the last job: not yet"
    assert await co.begin(recent, "m", 10_400) == 0, "due at its window's end, not extended for the end"
    assert await co.commit(recent, "m", "r2", "r2", b"{}", b"[]", 10_400) == Committed.SENT
    await co.result(recent, "r2", True, "unused", 10_410)
    assert await co.mark(recent, "m2", 10_800, run=Run.MORE) == 300
    assert await co.mark(recent, "e2", 10_900, run=Run.ENDED) == 0, "a window after the last job: at once"


async def _write_at(co: Coalescer, target: str, name: str, now: int) -> None:
    assert await co.mark(target, f"{name}-plan", now) is not None
    await co.begin(target, f"{name}-plan", now, extend=False)
    assert await co.commit(target, f"{name}-plan", name, name, b"{}", b"[]", now) == Committed.SENT
    await co.result(target, name, True, "unused", now + 5)


async def test_the_end_of_a_run_reaching_a_plan_already_due_is_read_by_it_without_extending_its_hold(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    assert await co.mark(T, "p1", 1_000, run=Run.MORE) == 300
    # Due at 1_300; its replica has not begun it yet when the run's last change comes: nothing to take over (the
    # plan about to be built reads the change), and the hold is not extended for it.
    assert await co.mark(T, "p2", 1_310, run=Run.ENDED) is None
    assert await co.begin(T, "p1", 1_320) == 0
    assert await co.commit(T, "p1", "job1", "v1", b"{}", b"[]", 1_320) == Committed.SENT


async def test_the_window_grows_with_cloudflares_answer_time_not_with_a_job_that_waited_its_turn(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys, window=WINDOW)
    for target, answered, window in ((T, 20, 300), ("zone:slow.example", 400, 2_000)):
        assert await co.mark(target, "p1", 1_000) == 0
        assert await co.commit(target, "p1", "job1", "v1", b"{}", b"[]", 1_000) == Committed.SENT
        assert await co.mark(target, "p2", 6_000) is None
        # Five seconds from commit to result (the job queued behind a spent rate budget), its one call answered in
        # ``answered`` ms: the window is five times that, at least the base (measured from a change as the result
        # comes: a window after the newest change).
        outcome = await co.result(target, "job1", True, "p3", 6_000, writes=1, cloudflare_ms=answered)
        assert (outcome.plan_again, outcome.delay_ms) == (True, window), target


async def test_a_zones_jobs_go_to_the_zones_lane_and_the_other_targets_jobs_to_cf_jobs(
    redis: aioredis.Redis, keys: Keys
) -> None:
    co = Coalescer(redis, keys)
    for n, target in enumerate((T, "tunnel:t1", "access:app.example.com")):
        assert await co.mark(target, f"p{n}", 1_000) == 0
        assert await co.commit(target, f"p{n}", f"job{n}", "v1", target.encode(), b"[]", 1_000) == Committed.SENT
    lanes = {stream: await _payloads(redis, stream) for stream in (keys.cf_jobs, keys.cf_jobs_zones)}
    assert lanes == {keys.cf_jobs: [b"tunnel:t1", b"access:app.example.com"], keys.cf_jobs_zones: [T.encode()]}


async def test_an_admins_verification_of_every_target_reaches_each_on_its_lane(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await Emitter(redis, keys).verify([Target.zone("example.com"), Target.tunnel("t1"), Target.zone("example.org")])
    lanes = {
        stream: [(type(job), job.target) for job in map(decode_job, await _payloads(redis, stream))]
        for stream in (keys.cf_jobs, keys.cf_jobs_zones)
    }
    assert lanes == {
        keys.cf_jobs: [(VerifyTarget, "tunnel:t1")],
        keys.cf_jobs_zones: [(VerifyTarget, "zone:example.com"), (VerifyTarget, "zone:example.org")],
    }


async def _payloads(redis: aioredis.Redis, stream: str) -> list[bytes]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream) or []  # type: ignore[assignment]
    return [fields[FIELD] for _, fields in entries]
