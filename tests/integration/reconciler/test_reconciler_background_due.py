"""The background's idle pass: one read says what is due, and only due work runs (issue 23: idle must be idle)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.replies import text
from flareport_reconciler.background import Background
from flareport_reconciler.upkeep import Due, Upkeep
from fptest.reconciler_harness import Replicas


async def test_due_names_the_oldest_item_of_each_kind_and_nothing_when_all_is_empty(
    redis: aioredis.Redis, keys: Keys
) -> None:
    # The store alone, without replicas running: a replica's background pass would take the items written below
    # (all long due) between their writing and the read, as it did once on a loaded machine.
    store = Upkeep(redis, keys)
    nothing = await store.due()
    assert (nothing.deletion_at, nothing.oldest_mark_ms, nothing.oldest_seen, nothing.recovery) == (
        None,
        None,
        None,
        False,
    ), "an empty data set has nothing due"
    await redis.zadd(keys.pending_deletions, {"b.example.com\x1fc2": 200.0, "a.example.com\x1fc1": 100.0})
    await redis.zadd(keys.dirty_hostnames, {"a.example.com": 5000, "b.example.com": 4000})
    await redis.zadd(keys.agents_last_seen, {"a1": 30.0, "a2": 20.0})
    await redis.set(keys.keys_recovered_at, "1")
    due = await store.due()
    assert (due.deletion_at, due.oldest_mark_ms, due.oldest_seen, due.recovery) == (100.0, 4000.0, 20.0, True)


async def test_a_pass_handles_a_silent_agent_and_leaves_one_heard_from_recently(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas
) -> None:
    now = time.time()
    await redis.zadd(keys.agents_last_seen, {"silent": now - 3600, "recent": now})
    await replicas.items[0].background.pass_once()
    left = {text(m) for m in await redis.zrange(keys.agents_last_seen, 0, -1)}
    assert left == {"recent"}, "the silent agent was handled (and left the set), the recent one stays"


async def test_an_idle_replica_passes_when_the_earliest_item_falls_due_and_at_most_every_eight_intervals(
    replicas: Replicas,
) -> None:
    background = replicas.items[0].background
    interval = background.r.settings.sweep_interval_seconds  # 0.1 s here
    now = 10_000.0
    nothing = Due(deletion_at=None, oldest_mark_ms=None, oldest_seen=None, recovery=False)
    assert background.wait_after(nothing, now, timers=3600) == 8 * interval, "nothing due: the longest wait"
    soon = Due(deletion_at=now + 0.5, oldest_mark_ms=None, oldest_seen=None, recovery=False)
    assert background.wait_after(soon, now, timers=3600) == 0.5, "a grace period ending in 0.5 s: a pass then"
    late = Due(deletion_at=now - 1, oldest_mark_ms=None, oldest_seen=None, recovery=False)
    assert background.wait_after(late, now, timers=3600) == interval, "overdue: the next pass one interval on"
    offline = background.r.settings.agent_offline_seconds
    silent = Due(deletion_at=None, oldest_mark_ms=None, oldest_seen=now - offline + 0.3, recovery=False)
    assert abs(background.wait_after(silent, now, timers=3600) - 0.3) < 1e-6, "an agent about to go offline"
    held = Due(deletion_at=None, oldest_mark_ms=None, oldest_seen=None, recovery=True)
    assert background.wait_after(held, now, timers=3600) == interval, "a recovery hold: every interval, as before"
    assert background.wait_after(None, now, timers=3600) == interval, "Redis away: try again one interval on"


async def test_a_grace_period_this_replica_writes_ends_the_backgrounds_wait_for_it(replicas: Replicas) -> None:
    # A loop of its own, not the replica's running one (whose passes would take the wake-up first).
    background = Background(replicas.items[0].background.r)
    began = time.monotonic()
    wait = asyncio.create_task(background._sleep(60))
    await asyncio.sleep(0)
    assert background.r.claims.on_deletion is not None
    background.r.claims.on_deletion(time.time() + 0.3)
    await asyncio.wait_for(wait, timeout=10)
    assert time.monotonic() - began < 5, "the wait ended when the grace period did, not a minute later"
