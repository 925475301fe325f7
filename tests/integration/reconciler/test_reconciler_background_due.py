"""The background's idle pass: one read says what is due, and only due work runs (issue 23: idle must be idle)."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.replies import text
from fptest.reconciler_harness import Replicas


async def test_due_names_the_oldest_item_of_each_kind_and_nothing_when_all_is_empty(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas
) -> None:
    store = replicas.items[0].background.store
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
