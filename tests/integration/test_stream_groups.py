"""The consumer-group helpers shared by the stream runtime and the API's command long-poll, against redis-server."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from flareport_common import readversion
from flareport_common.keys import Keys
from flareport_common.messages import DeadLetter
from flareport_common.replies import optional_text, text
from flareport_common.streams import groups


async def test_ensure_group_makes_stream_and_group_once(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{prefix}s"
    await groups.ensure_group(redis, stream, "g")
    await groups.ensure_group(redis, stream, "g")  # exists already: BUSYGROUP is not an error
    names = [text(g["name"]) for g in await redis.xinfo_groups(stream)]
    assert names == ["g"], f"one group expected on the new stream, found {names}"


async def test_ensure_group_reports_other_refusals(redis: aioredis.Redis, prefix: str) -> None:
    key = f"{prefix}not-a-stream"
    await redis.set(key, "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await groups.ensure_group(redis, key, "g")


async def test_a_lost_group_is_recognised(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{prefix}s"
    await redis.xadd(stream, {"m": b"{}"})
    with pytest.raises(ResponseError) as lost:
        await redis.xreadgroup("missing", "c", {stream: ">"})
    assert groups.stream_lost(lost.value), f"NOGROUP should read as a lost group: {lost.value}"
    assert not groups.stream_lost(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))


async def test_entries_and_delivery_counts_of_a_read(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{prefix}s"
    await groups.ensure_group(redis, stream, "g")
    ids = [text(await redis.xadd(stream, {"m": str(n).encode()})) for n in range(3)]
    read = groups.entries(await redis.xreadgroup("g", "c", {stream: ">"}, count=10))
    assert [text(entry_id) for entry_id, _ in read] == ids
    assert groups.entries(await redis.xreadgroup("g", "c", {stream: ">"}, count=10)) == [], "nothing new is left"
    counts = await groups.delivery_counts(redis, stream, "g", "c", [ids[2], ids[0]], others=1)
    assert counts == {ids[0]: 1, ids[2]: 1}, "ids given out of order are all found, each delivered once"
    await redis.xclaim(stream, "g", "c", 0, [ids[0]])
    counts = await groups.delivery_counts(redis, stream, "g", "c", [ids[2], ids[0]], others=1)
    assert counts == {ids[0]: 2, ids[2]: 1}, "a claim counts as a second delivery"
    await redis.xack(stream, "g", ids[2])
    assert await groups.delivery_counts(redis, stream, "g", "c", [ids[2]], others=0) == {}, "acked: not pending"


def test_entries_reads_both_reply_forms() -> None:
    entry = (b"1-0", {b"m": b"{}"})
    assert groups.entries([[b"s", [entry]]]) == [entry]  # RESP2
    assert groups.entries({b"s": [[entry]]}) == [entry]  # RESP3
    assert groups.entries(None) == [] and groups.entries([]) == []


async def test_a_dead_letter_replaces_its_entry_in_one_transaction(redis: aioredis.Redis, prefix: str) -> None:
    stream, dead = f"{prefix}s", f"{prefix}dead"
    await groups.ensure_group(redis, stream, "g")
    entry_id = text(await redis.xadd(stream, {"m": b"not json"}))
    await redis.xreadgroup("g", "c", {stream: ">"})
    letter = DeadLetter(
        source_stream=stream,
        source_id=entry_id,
        group="g",
        consumer="c",
        reason="undecodable",
        error="bad",
        deliveries=1,
        payload={"m": "not json"},
    )
    pipe = redis.pipeline(transaction=True)
    groups.queue_dead_letter(pipe, dead, letter)
    await pipe.execute()
    assert int((await redis.xpending(stream, "g"))["pending"]) == 0, "the entry is acknowledged with its letter"
    written: Any = await redis.xrange(dead)
    assert [msgspec.json.decode(fields[b"m"], type=DeadLetter) for _, fields in written] == [letter]


async def test_the_read_model_counter_starts_at_random_and_rises(redis: aioredis.Redis, keys: Keys) -> None:
    for _ in range(2):
        pipe = redis.pipeline(transaction=True)
        readversion.bump(pipe, keys)
        await pipe.execute()
    first = int(text(await redis.get(keys.readmodel_version)))
    other = Keys(keys.prefix + "other:")
    pipe = redis.pipeline(transaction=True)
    readversion.bump(pipe, other)
    await pipe.execute()
    assert first != 2, "the counter starts at a random value, not at zero"
    assert int(text(await redis.get(other.readmodel_version))) != first - 1, (
        "two counters do not start at the same value"
    )
    pipe = redis.pipeline(transaction=True)
    readversion.bump(pipe, keys)
    await pipe.execute()
    assert int(text(await redis.get(keys.readmodel_version))) == first + 1, "each bump raises it by one"


def test_replies_as_text() -> None:
    assert text(b"caf\xc3\xa9") == "café" and text("x") == "x" and text(7) == "7"
    assert optional_text(None) is None and optional_text(b"a") == "a" and optional_text("b") == "b"
    with pytest.raises(UnicodeDecodeError):
        text(b"\xff")  # a reply that is not UTF-8 is an error, never silently mangled
