"""The read-model counter (``Keys.readmodel_version``) the web UI's live updates watch instead of every document.

The property the UI relies on: a document never changes while the counter stays put. A sampler reads the counter
and every agent and rule document throughout a whole lifecycle (register, enrol, start, results, label errors,
stop, grace deletion, offline, back, rename, manual rule, decommission) across 3 replicas, and no counter value
may be seen with two different sets of documents; after every step that changed a document the counter is higher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentRegistered,
    AgentRenamed,
    ContainerInfo,
    ContainerStart,
    ContainerStop,
    Heartbeat,
    ManualRuleUpserted,
    Rule,
    RuleError,
)
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, Replicas, agent_record, all_drained, container, rule_records
from fptest.reconciler_harness import settle as settle_all
from fptest.waiting import wait_for

Documents = dict[str, bytes]


async def counter(redis: aioredis.Redis, keys: Keys) -> int:
    return int(await redis.get(keys.readmodel_version) or 0)


async def documents(redis: aioredis.Redis, keys: Keys) -> Documents:
    found: Documents = {}
    for index, key_of in ((keys.agents_index, keys.agent), (keys.rules_index, keys.rule)):
        members: set[Any] = await redis.smembers(index)
        names = sorted(m.decode() for m in members)
        raws: list[Any] = await redis.mget([key_of(n) for n in names]) if names else []
        found.update({key_of(n): raw for n, raw in zip(names, raws, strict=True) if raw is not None})
    return found


class Sampler:
    """Records (counter, documents) pairs read while nothing moved the counter, and any counter value seen with two
    different sets of documents (a write that the UI would not have noticed). Runs on its own client, as the API's
    watcher would, alongside the test's own reads."""

    def __init__(self, url: str, keys: Keys) -> None:
        self.redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self.keys = keys
        self.seen: dict[int, Documents] = {}
        self.unnoticed: list[tuple[int, set[str]]] = []
        self.stopping = asyncio.Event()

    def record(self, version: int, docs: Documents) -> None:
        known = self.seen.setdefault(version, docs)
        if known != docs:
            changed = {k for k in known.keys() | docs.keys() if known.get(k) != docs.get(k)}
            self.unnoticed.append((version, changed))

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                before = await counter(self.redis, self.keys)
                docs = await documents(self.redis, self.keys)
                if await counter(self.redis, self.keys) == before:  # else a write came in between: mixed versions
                    self.record(before, docs)
                with contextlib.suppress(TimeoutError):  # pacing: sample often without monopolising redis-server
                    await asyncio.wait_for(self.stopping.wait(), timeout=0.005)
        finally:
            await self.redis.aclose()


async def test_every_write_of_a_document_raises_the_counter(
    redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    producer = Producer(redis)
    sampler = Sampler(settings.common.redis_url, keys)
    task = asyncio.create_task(sampler.run())

    async def step(what: str, act: Callable[[], Awaitable[object]], done: Callable[[], Awaitable[bool]]) -> None:
        before = await counter(redis, keys)
        docs = await documents(redis, keys)
        await act()
        await wait_for(done, what=what)
        # Quiescent now (the step's effect is visible and its streams drained): a consistent pair for the sampler.
        after, changed = await counter(redis, keys), await documents(redis, keys)
        sampler.record(after, changed)
        assert changed != docs, f"{what}: the step changes a document"
        assert after > before, f"{what}: the read-model counter rose with the documents"

    async def drained() -> bool:
        return await all_drained(redis, keys)

    async def settle() -> bool:
        await settle_all(redis, keys, worker)
        return True

    async def agent_is(expected: str) -> bool:
        record = await agent_record(redis, keys, "a1")
        return record is not None and record.status == expected

    async def rule_is(key: str, expected: str | None) -> bool:
        doc = (await rule_records(redis, keys)).get(key)
        return (doc.status if doc else None) == expected

    async def answer_jobs() -> None:
        await worker.answer(await worker.pull())

    try:
        await step(
            "register",
            lambda: producer.send(keys.events, AgentRegistered(agent_id="a1", display_name="host a1")),
            lambda: agent_is("pending"),
        )
        await step(
            "enrol (tunnel ensured, agent active)",
            lambda: producer.send(keys.intents, AgentEnrolled(agent_id="a1", tunnel_name="tunnel-a1")),
            lambda: _all(settle, lambda: agent_is("active")),
        )
        start = ContainerStart(agent_id="a1", seq=1, container=container("c1", "app.example.com", grace=1))
        await step(
            "container start (refresh writes a pending rule)",
            lambda: producer.send(keys.events, start),
            lambda: _all(drained, lambda: rule_is("app.example.com", "pending")),
        )
        await step(
            "job results (rule statuses)",
            answer_jobs,
            lambda: _all(settle, lambda: rule_is("app.example.com", "active")),
        )
        bad = RuleError(label="flareport.1.hostname", reason="not a hostname: 'exa mple'")
        faulty = ContainerInfo(container_id="c2", name="c-c2", rules=(), errors=(bad,))

        async def has_label_errors() -> bool:
            record = await agent_record(redis, keys, "a1")
            return record is not None and [e.container_id for e in record.label_errors] == ["c2"]

        await step(
            "label errors on the agent record (inventory transaction)",
            lambda: producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=faulty)),
            lambda: _all(settle, has_label_errors),
        )
        await step(
            "container stop (pending deletion)",
            lambda: producer.send(keys.events, ContainerStop(agent_id="a1", seq=3, container_id="c1")),
            lambda: _all(settle, lambda: rule_is("app.example.com", "pending_deletion")),
        )
        await step(
            "grace deletion (background)",
            _nothing,
            lambda: _all(settle, lambda: rule_is("app.example.com", None)),
        )

        async def silence() -> None:
            # Pretend the last contact was long ago, written as any writer must: with the counter.
            record = await agent_record(redis, keys, "a1")
            assert record is not None
            long_ago = datetime.now(UTC) - timedelta(minutes=5)
            record.last_seen = long_ago
            pipe = redis.pipeline(transaction=True)
            pipe.set(keys.agent("a1"), msgspec.json.encode(record))
            pipe.incr(keys.readmodel_version)
            pipe.zadd(keys.agents_last_seen, {"a1": long_ago.timestamp()})
            await pipe.execute()

        await silence()

        async def offline() -> bool:
            if await agent_is("offline"):
                return True
            # A background pass that scanned just before ``silence`` drops the entry it did not see as stale (its
            # scan and its clean-up are two commands): put it back until a pass handles it.
            long_ago = datetime.now(UTC) - timedelta(minutes=5)
            await redis.zadd(keys.agents_last_seen, {"a1": long_ago.timestamp()}, nx=True)
            return False

        await step("offline detection (background)", _nothing, offline)
        await step(
            "heartbeat (back online)",
            lambda: producer.send(keys.events, Heartbeat(agent_id="a1")),
            lambda: agent_is("active"),
        )

        async def renamed() -> bool:
            record = await agent_record(redis, keys, "a1")
            return record is not None and record.display_name == "renamed"

        await step(
            "rename",
            lambda: producer.send(keys.intents, AgentRenamed(agent_id="a1", display_name="renamed")),
            renamed,
        )
        manual = ManualRuleUpserted(
            rule_id="m1", rule=Rule(hostname="m.example.com", service="http://m:1"), agent_id="a1"
        )
        await step(
            "manual rule",
            lambda: producer.send(keys.intents, manual),
            lambda: _all(settle, lambda: rule_is("m.example.com", "active")),
        )
        await step(
            "decommission",
            lambda: producer.send(keys.intents, AgentDecommissioned(agent_id="a1")),
            lambda: _all(settle, lambda: agent_is("removed"), lambda: rule_is("m.example.com", None)),
        )
    finally:
        sampler.stopping.set()
        await task

    assert len(sampler.seen) > 10, "the sampler saw the lifecycle's versions"
    assert sampler.unnoticed == [], "documents changed while the read-model counter stayed put (unseen by the UI)"


async def _nothing() -> None:
    return None


async def _all(*conditions: Callable[[], Awaitable[bool]]) -> bool:
    for condition in conditions:
        if not await condition():
            return False
    return True
