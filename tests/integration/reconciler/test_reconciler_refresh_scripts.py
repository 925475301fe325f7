"""The refresh's scripts (``flareport_reconciler.refreshscripts``), each on its own against real Redis: a refresh's
writes and its finish apply only while everything it read is unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_reconciler import refreshscripts
from flareport_reconciler.refreshscripts import HostnameFinish, HostnameWrite
from flareport_reconciler.scripts import DocumentWrite, Written

H = "app.example.com"
CLAIM = b'1000|agent:a1|{"source":"agent:a1:c1"}'


async def _setup(redis: aioredis.Redis, keys: Keys) -> list[Any]:
    """A hostname with one claim, a state, a dirty mark and one rule document; returns what a refresh reads."""
    await redis.hset(keys.hostname_claims(H), "agent:a1:c1", CLAIM)
    await redis.set(keys.hostname_state(H), b"state-1")
    await redis.zadd(keys.dirty_hostnames, {H: 5_000})
    await redis.set(keys.rule(H), b"doc-1")
    await redis.sadd(keys.rules_index, H)
    reads: list[list[Any]] = await refreshscripts.read_hostnames(redis, keys, [H])
    return reads[0]


async def test_a_hostname_is_read_with_its_claims_state_and_mark(redis: aioredis.Redis, keys: Keys) -> None:
    read = await _setup(redis, keys)
    pipe = redis.pipeline(transaction=True)
    refreshscripts.queue_read_hostnames(pipe, keys, [H, "none.example.com"])
    [queued] = await pipe.execute()

    assert read == [[b"agent:a1:c1", CLAIM], b"state-1", b"5000"]
    assert queued == [read, [[], None, None]]


def _write(read: list[Any], state_write: bytes) -> HostnameWrite:
    claims, state, score = read
    return HostnameWrite(H, score_read=score, state_read=state, claims_read=claims, state_write=state_write)


async def test_a_refresh_writes_states_and_documents_and_raises_the_counter(redis: aioredis.Redis, keys: Keys) -> None:
    read = await _setup(redis, keys)
    documents = [DocumentWrite(H, b"doc-1", b"doc-2"), DocumentWrite("new.example.com", b"", b"doc-new")]

    answer = await refreshscripts.write_refresh(redis, keys, [_write(read, b"state-2")], documents, seed=10)

    assert answer == Written.WRITTEN
    assert await redis.get(keys.hostname_state(H)) == b"state-2"
    assert await redis.mget([keys.rule(H), keys.rule("new.example.com")]) == [b"doc-2", b"doc-new"]
    assert await redis.smembers(keys.rules_index) == {H.encode(), b"new.example.com"}
    assert await redis.get(keys.readmodel_version) == b"11"


async def test_a_refresh_that_changes_only_states_leaves_the_counter(redis: aioredis.Redis, keys: Keys) -> None:
    read = await _setup(redis, keys)

    answer = await refreshscripts.write_refresh(
        redis, keys, [_write(read, b"-")], [DocumentWrite(H, b"doc-1", b"-")], seed=10
    )
    assert answer == Written.WRITTEN
    assert await redis.exists(keys.hostname_state(H), keys.rule(H)) == 0
    assert await redis.smembers(keys.rules_index) == set()
    assert await redis.get(keys.readmodel_version) == b"11", "a deleted document is a change the UI must see"

    read = (await refreshscripts.read_hostnames(redis, keys, [H]))[0]
    assert await refreshscripts.write_refresh(redis, keys, [_write(read, b"state-3")], [], seed=10) == Written.WRITTEN
    assert await redis.get(keys.readmodel_version) == b"11", "states are not shown: the counter stays"


CHANGES = {
    "the mark moved": lambda r, k: r.zadd(k.dirty_hostnames, {H: 5_001}),
    "the mark was cleared": lambda r, k: r.zrem(k.dirty_hostnames, H),
    "the state changed": lambda r, k: r.set(k.hostname_state(H), b"state-x"),
    "a claim changed": lambda r, k: r.hset(k.hostname_claims(H), "agent:a1:c1", b"2000|agent:a1|{}"),
    "a claim was added": lambda r, k: r.hset(k.hostname_claims(H), "manual:r1", b"1|manual:r1|{}"),
    "the hostname was assigned": lambda r, k: r.hset(k.hostname_claims(H), "!assigned", b"agent:a2"),
    "a claim was removed": lambda r, k: r.hdel(k.hostname_claims(H), "agent:a1:c1"),
    "the document changed": lambda r, k: r.set(k.rule(H), b"doc-x"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_refresh_whose_reads_changed_writes_nothing(redis: aioredis.Redis, keys: Keys, change: str) -> None:
    read = await _setup(redis, keys)
    await CHANGES[change](redis, keys)
    before = await redis.mget([keys.hostname_state(H), keys.rule(H)])

    answer = await refreshscripts.write_refresh(
        redis, keys, [_write(read, b"state-2")], [DocumentWrite(H, b"doc-1", b"doc-2")], seed=10
    )

    assert answer == Written.CHANGED, f"a refresh must not write after {change}"
    assert await redis.mget([keys.hostname_state(H), keys.rule(H)]) == before
    assert await redis.get(keys.readmodel_version) is None


def _finish(read: list[Any], written: bytes | None, final: bytes | None) -> HostnameFinish:
    claims, _, score = read
    return HostnameFinish(H, score_read=score, claims_read=claims, state_written=written, state_final=final)


async def test_a_finish_drops_the_pending_state_and_the_mark_when_nothing_changed(
    redis: aioredis.Redis, keys: Keys
) -> None:
    read = await _setup(redis, keys)

    assert await refreshscripts.finish_refresh(redis, keys, [_finish(read, b"state-1", b"state-final")]) == 1
    assert await redis.get(keys.hostname_state(H)) == b"state-final"
    assert await redis.zscore(keys.dirty_hostnames, H) is None


async def test_a_finish_with_an_empty_final_state_deletes_it(redis: aioredis.Redis, keys: Keys) -> None:
    read = await _setup(redis, keys)

    assert await refreshscripts.finish_refresh(redis, keys, [_finish(read, b"state-1", None)]) == 1
    assert await redis.exists(keys.hostname_state(H)) == 0


async def test_a_finish_keeps_a_newer_mark_and_a_state_another_refresh_wrote(redis: aioredis.Redis, keys: Keys) -> None:
    read = await _setup(redis, keys)
    await redis.zadd(keys.dirty_hostnames, {H: 6_000})
    assert await refreshscripts.finish_refresh(redis, keys, [_finish(read, b"state-1", b"state-final")]) == 0
    assert await redis.zscore(keys.dirty_hostnames, H) == 6_000, "a change after the read keeps its mark"
    assert await redis.get(keys.hostname_state(H)) == b"state-final", "the pending targets were touched all the same"

    read = await _setup(redis, keys)
    await redis.set(keys.hostname_state(H), b"state-other")
    assert await refreshscripts.finish_refresh(redis, keys, [_finish(read, b"state-1", b"state-final")]) == 0
    assert await redis.get(keys.hostname_state(H)) == b"state-other"
    assert await redis.zscore(keys.dirty_hostnames, H) == 5_000


async def test_a_finish_keeps_the_mark_when_the_claims_changed_or_none_was_read(
    redis: aioredis.Redis, keys: Keys
) -> None:
    read = await _setup(redis, keys)
    await redis.hset(keys.hostname_claims(H), "manual:r1", b"1|manual:r1|{}")
    assert await refreshscripts.finish_refresh(redis, keys, [_finish(read, b"state-1", b"state-1")]) == 0
    assert await redis.zscore(keys.dirty_hostnames, H) == 5_000

    read = await _setup(redis, keys)
    unmarked = HostnameFinish(H, score_read=None, claims_read=read[0], state_written=b"state-1", state_final=b"s2")
    assert await refreshscripts.finish_refresh(redis, keys, [unmarked]) == 0
    assert await redis.zscore(keys.dirty_hostnames, H) == 5_000, "a mark the refresh did not read is not its own"
    assert await redis.get(keys.hostname_state(H)) == b"s2"


async def test_a_hostname_read_without_claims_must_still_have_none(redis: aioredis.Redis, keys: Keys) -> None:
    empty = HostnameWrite("gone.example.com", score_read=None, state_read=None, claims_read=[], state_write=b"")

    assert await refreshscripts.write_refresh(redis, keys, [empty], [], seed=10) == Written.WRITTEN
    await redis.hset(keys.hostname_claims("gone.example.com"), "manual:r1", b"1|manual:r1|{}")
    assert await refreshscripts.write_refresh(redis, keys, [empty], [], seed=10) == Written.CHANGED
