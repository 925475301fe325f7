"""Label errors shown on the agent record, and pruning of long-stopped containers — with 3 replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import (
    AgentEnrolled,
    AgentRegistered,
    ContainerInfo,
    ContainerStart,
    ContainerStop,
    Inventory,
    Rule,
    RuleError,
)
from flareport_common.readmodel import ContainerLabelErrors
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, Replicas, agent_record, container, rule_records, settle

BAD = RuleError(label="flareport.1.hostname", reason="not a hostname: 'exa mple'")


def faulty(cid: str, hostname: str) -> ContainerInfo:
    rules = (Rule(hostname=hostname, service="http://web:80"),)
    return ContainerInfo(container_id=cid, name=f"c-{cid}", rules=rules, errors=(BAD,))


async def enrol(redis: aioredis.Redis, keys: Keys, worker: FakeDnsWorker, agent_id: str) -> None:
    producer = Producer(redis)
    await producer.send(keys.events, AgentRegistered(agent_id=agent_id, display_name=f"host {agent_id}"))
    await producer.send(keys.intents, AgentEnrolled(agent_id=agent_id))
    await settle(redis, keys, worker)


async def members(redis: aioredis.Redis, key: str) -> set[str]:
    found: set[Any] = await redis.smembers(key)
    return {m.decode() for m in found}


async def label_errors(redis: aioredis.Redis, keys: Keys, agent_id: str) -> list[tuple[str, str]]:
    record = await agent_record(redis, keys, agent_id)
    assert record is not None
    return [(e.container_id, e.container_name) for e in record.label_errors]


async def test_label_errors_of_running_containers_are_on_the_agent_record_until_they_stop_or_vanish(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=faulty("c1", "one.example.com")))
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=faulty("c2", "two.example.com")))
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=3, container=container("c3", "ok.example.com")))
    await settle(redis, keys, worker)
    record = await agent_record(redis, keys, "a1")
    assert record is not None
    assert record.label_errors[0] == ContainerLabelErrors(container_id="c1", container_name="c-c1", errors=(BAD,))
    assert await label_errors(redis, keys, "a1") == [("c1", "c-c1"), ("c2", "c-c2")]
    # The valid rules of a container with label errors are published regardless.
    assert "one.example.com" in await rule_records(redis, keys)

    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=4, container_id="c1"))
    await settle(redis, keys, worker)
    assert await label_errors(redis, keys, "a1") == [("c2", "c-c2")]

    snapshot = Inventory(agent_id="a1", seq=5, containers=(container("c3", "ok.example.com"),))
    await producer.send(keys.events, snapshot)
    await settle(redis, keys, worker)
    assert await label_errors(redis, keys, "a1") == []
    record = await agent_record(redis, keys, "a1")
    assert record is not None and (record.status, record.display_name) == ("active", "host a1")


async def test_pruned_container_ignores_late_old_events_but_a_new_start_publishes_again(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    app = container("c1", "app.example.com")
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=app))
    kept = container("c2", "kept.example.com")
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=kept))
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=3, container_id="c1"))
    await settle(redis, keys, worker)
    background = replicas.items[0].background
    in_two_hours = (datetime.now(UTC) + timedelta(hours=2)).timestamp()
    assert await background.process_due_deletions(now=in_two_hours) == 1
    await settle(redis, keys, worker)
    assert set(await rule_records(redis, keys)) == {"kept.example.com"}
    # Planning the zone and the tunnel dropped the unclaimed hostname from their indexes.
    for index in (keys.target_hostnames("zone:example.com"), keys.agent_hostnames("a1")):
        assert await members(redis, index) == {"kept.example.com"}

    assert await background.prune_stopped(now=in_two_hours) == 1
    assert await members(redis, keys.agent_containers("a1")) == {"c2"}
    # A duplicate of the old start, delivered late, must not bring the pruned container back.
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=app))
    await settle(redis, keys, worker)
    assert set(await rule_records(redis, keys)) == {"kept.example.com"}
    assert not await redis.exists(keys.agent_container("a1", "c1"))

    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=4, container=app))
    await settle(redis, keys, worker)
    assert set(await rule_records(redis, keys)) == {"app.example.com", "kept.example.com"}


async def test_a_snapshot_after_the_grace_period_does_not_publish_a_long_stopped_container_again(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    # c1 stopped 11 minutes ago (grace 600 s, retention 1 h: its entry is kept, its rules are gone); then the
    # agent restarts and sends a snapshot without it, which must not count the grace period again from now.
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    now = datetime.now(UTC)
    app, kept = container("c1", "app.example.com"), container("c2", "kept.example.com")
    long_ago = now - timedelta(minutes=20)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=app, occurred_at=long_ago))
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=kept, occurred_at=long_ago))
    await settle(redis, keys, worker)
    stopped_at = now - timedelta(minutes=11)
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=3, container_id="c1", occurred_at=stopped_at))
    await settle(redis, keys, worker)
    assert set(await rule_records(redis, keys)) == {"kept.example.com"}

    await producer.send(keys.events, Inventory(agent_id="a1", seq=4, containers=(kept,)))
    jobs = await settle(redis, keys, worker)
    assert set(await rule_records(redis, keys)) == {"kept.example.com"}, "the gone container came back"
    assert not await redis.exists(keys.hostname_claims("app.example.com"))
    assert await redis.zcard(keys.pending_deletions) == 0, "nothing is to be deleted again later"
    assert jobs == [], "no Cloudflare job: nothing changed"
    assert await redis.exists(keys.agent_container("a1", "c1")), "the entry is kept (not pruned) meanwhile"
