"""Enrolment, rules going active, grace deletion and its cancellation, decommission — with 3 replicas."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentRegistered,
    CommandMessage,
    ContainerInfo,
    ContainerStart,
    ContainerStop,
    Decommission,
    DeleteTunnel,
    EnsureTunnel,
    Heartbeat,
    KeyRolled,
    ManualRuleDeleted,
    ManualRuleUpserted,
    RotateKey,
    Rule,
    StartTunnel,
    StopTunnel,
    SyncDnsZone,
    SyncTunnelIngress,
)
from flareport_common.streams import Producer
from fptest.reconciler_harness import (
    FakeDnsWorker,
    Replicas,
    agent_record,
    commands,
    container,
    rule_records,
    settle,
)
from fptest.waiting import wait_for


async def enrol(redis: aioredis.Redis, keys: Keys, worker: FakeDnsWorker, agent_id: str) -> None:
    producer = Producer(redis)
    await producer.send(keys.events, AgentRegistered(agent_id=agent_id, display_name=f"host {agent_id}"))
    await producer.send(keys.intents, AgentEnrolled(agent_id=agent_id, tunnel_name=f"tunnel-{agent_id}"))
    await settle(redis, keys, worker)


async def test_enrolment_creates_the_tunnel_and_starts_it_on_the_agent(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.command_notifications)
    await enrol(redis, keys, worker, "a1")

    ensure = [job for job in worker.jobs if isinstance(job, EnsureTunnel)]
    assert [(j.agent_id, j.tunnel_name, j.create) for j in ensure] == [("a1", "tunnel-a1", True)]
    sent = await commands(redis, keys, "a1")
    ref = sent[0].secret_ref if isinstance(sent[0], StartTunnel) else None
    assert sent == [StartTunnel(id=sent[0].id, occurred_at=sent[0].occurred_at, tunnel_id="tun-a1", secret_ref=ref)]
    assert ref is not None and await redis.get(keys.agent_secret("a1", ref)) == b"token-a1", "the token waits aside"
    record = await agent_record(redis, keys, "a1")
    assert record is not None
    assert (record.status, record.tunnel_id, record.tunnel_created_by_flareport) == ("active", "tun-a1", True)
    assert record.display_name == "host a1"

    async def notified() -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        return message is not None and message["data"] == b"a1"

    await wait_for(notified, what="a command notification for agent a1")
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_container_rules_become_jobs_and_then_active(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    info = container("c1", "app.example.com", "api.example.com")
    await Producer(redis).send(keys.events, ContainerStart(agent_id="a1", seq=1, container=info))
    jobs = await settle(redis, keys, worker)

    tunnel = [j for j in jobs if isinstance(j, SyncTunnelIngress)]
    zone = [j for j in jobs if isinstance(j, SyncDnsZone)]
    assert [[r.hostname for r in j.rules] for j in tunnel] == [["api.example.com", "app.example.com"]]
    assert [(j.zone_name, [(r.name, r.tunnel_id) for r in j.records]) for j in zone] == [
        ("example.com", [("api.example.com", "tun-a1"), ("app.example.com", "tun-a1")])
    ]
    docs = await rule_records(redis, keys)
    assert {k: (d.status, d.agent_id, d.tunnel_id) for k, d in docs.items()} == {
        "app.example.com": ("active", "a1", "tun-a1"),
        "api.example.com": ("active", "a1", "tun-a1"),
    }


async def test_second_agent_claiming_a_hostname_gets_a_conflict(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    await enrol(redis, keys, worker, "a2")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=container("c1", "app.example.com")))
    await settle(redis, keys, worker)
    await producer.send(keys.events, ContainerStart(agent_id="a2", seq=1, container=container("c2", "app.example.com")))
    await settle(redis, keys, worker)

    docs = await rule_records(redis, keys)
    assert docs["app.example.com"].status == "active"
    assert docs["app.example.com"].agent_id == "a1"
    loser = docs["app.example.com@agent:a2/c2"]
    assert loser.status == "conflict"
    assert loser.error == "hostname app.example.com is already published by agent:a1/c1"
    zone = worker.latest("zone:example.com")
    assert isinstance(zone, SyncDnsZone)
    assert [(r.name, r.tunnel_id) for r in zone.records] == [("app.example.com", "tun-a1")]


async def test_stopped_container_is_deleted_after_its_grace_period(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    short = container("c1", "gone.example.com", grace=1)
    await producer.send(
        keys.events, ContainerStart(agent_id="a1", seq=1, container=container("c0", "kept.example.com"))
    )
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=short))
    await settle(redis, keys, worker)
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=3, container_id="c1"))
    await settle(redis, keys, worker)
    doc = (await rule_records(redis, keys))["gone.example.com"]
    assert doc.status == "pending_deletion"
    assert doc.delete_at is not None

    async def deleted() -> bool:
        # Grace deletions run in the background loop, not from a stream: wait on their visible effect.
        await settle(redis, keys, worker)
        zone = worker.latest("zone:example.com")
        return isinstance(zone, SyncDnsZone) and [r.name for r in zone.records] == ["kept.example.com"]

    await wait_for(deleted, timeout=15, what="the DNS record to be removed after the 1 s grace period")
    await settle(redis, keys, worker)
    tunnel = worker.latest("tunnel:tun-a1")
    assert isinstance(tunnel, SyncTunnelIngress)
    assert [r.hostname for r in tunnel.rules] == ["kept.example.com"]
    assert set(await rule_records(redis, keys)) == {"kept.example.com"}


async def test_restart_within_the_grace_period_cancels_the_deletion(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    info = container("c1", "app.example.com")
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=info))
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=2, container_id="c1"))
    await settle(redis, keys, worker)
    assert (await rule_records(redis, keys))["app.example.com"].status == "pending_deletion"
    assert await redis.zcard(keys.pending_deletions) == 1

    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=3, container=info))
    await settle(redis, keys, worker)
    assert await redis.zcard(keys.pending_deletions) == 0
    far_future = (datetime.now(UTC) + timedelta(days=1)).timestamp()
    assert await replicas.items[0].background.process_due_deletions(now=far_future) == 0
    doc = (await rule_records(redis, keys))["app.example.com"]
    assert (doc.status, doc.delete_at) == ("active", None)


async def test_decommission_stops_the_tunnel_removes_records_and_deletes_the_tunnel(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=container("c1", "app.example.com")))
    await settle(redis, keys, worker)
    await producer.send(keys.intents, AgentDecommissioned(agent_id="a1"))
    jobs = await settle(redis, keys, worker)

    kinds = [type(c) for c in await commands(redis, keys, "a1")]
    assert kinds == [StartTunnel, StopTunnel, Decommission]
    assert [j.tunnel_id for j in jobs if isinstance(j, DeleteTunnel)] == ["tun-a1"]
    zone = worker.latest("zone:example.com")
    assert isinstance(zone, SyncDnsZone) and zone.records == ()
    assert await rule_records(redis, keys) == {}
    record = await agent_record(redis, keys, "a1")
    assert record is not None and record.status == "removed"

    # A removed agent's late events publish nothing.
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=container("c2", "x.example.com")))
    assert await settle(redis, keys, worker) == []
    assert await rule_records(redis, keys) == {}


async def test_silent_agent_goes_offline_without_losing_its_rules_and_comes_back(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=container("c1", "app.example.com")))
    await settle(redis, keys, worker)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    # Pretend the last contact was long ago: first in the record, then in the index the detector scans.
    record = await agent_record(redis, keys, "a1")
    assert record is not None
    record.last_seen = long_ago
    await redis.set(keys.agent("a1"), msgspec.json.encode(record))
    await redis.zadd(keys.agents_last_seen, {"a1": long_ago.timestamp()})

    async def status() -> str | None:
        found = await agent_record(redis, keys, "a1")
        return found.status if found else None

    await wait_for(lambda: _is(status, "offline"), what="agent a1 to be marked offline")
    assert (await rule_records(redis, keys))["app.example.com"].status == "active"
    assert await settle(redis, keys, worker) == []

    await producer.send(keys.events, Heartbeat(agent_id="a1"))
    await wait_for(lambda: _is(status, "active"), what="agent a1 to be active again after a heartbeat")


async def _is(read: Callable[[], Awaitable[str | None]], expected: str) -> bool:
    return await read() == expected


async def test_manual_rule_is_published_on_its_agents_tunnel_and_removed_on_delete(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    rule = Rule(hostname="manual.example.com", service="http://10.0.0.5:80")
    await producer.send(keys.intents, ManualRuleUpserted(rule_id="m1", rule=rule, agent_id="a1"))
    await settle(redis, keys, worker)
    doc = (await rule_records(redis, keys))["manual.example.com"]
    assert (doc.source, doc.manual_rule_id, doc.tunnel_id, doc.status) == ("manual", "m1", "tun-a1", "active")
    tunnel = worker.latest("tunnel:tun-a1")
    assert isinstance(tunnel, SyncTunnelIngress)
    assert [(r.hostname, r.source) for r in tunnel.rules] == [("manual.example.com", "manual:m1")]

    await producer.send(keys.intents, ManualRuleDeleted(rule_id="m1"))
    await settle(redis, keys, worker)
    assert await rule_records(redis, keys) == {}
    zone = worker.latest("zone:example.com")
    assert isinstance(zone, SyncDnsZone) and zone.records == ()


async def test_key_roll_is_delivered_to_the_agent(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await redis.set(keys.agent_secret("a1", "ref-2"), "secret-2")
    await Producer(redis).send(keys.intents, KeyRolled(agent_id="a1", key_id="k2", secret_ref="ref-2"))
    # An intent from an API of an older release carries the key itself: it is moved aside, not into the command.
    await Producer(redis).send(keys.intents, KeyRolled(agent_id="a1", key_id="k3", new_key="secret-3"))

    async def both() -> list[CommandMessage]:
        sent = await commands(redis, keys, "a1")
        return sent if len(sent) == 2 else []

    sent = await wait_for(both, what="two commands for agent a1")
    # Replicas handle the two intents concurrently, so the commands may come in either order.
    by_key = {c.key_id: c for c in sent if isinstance(c, RotateKey)}
    first, second = by_key["k2"], by_key["k3"]
    assert (first.key_id, first.new_key, first.secret_ref) == ("k2", "", "ref-2")
    assert (second.key_id, second.new_key) == ("k3", "") and second.secret_ref is not None
    assert await redis.get(keys.agent_secret("a1", second.secret_ref)) == b"secret-3"


async def test_a_new_service_changes_only_the_tunnel_and_the_rule_is_active_again(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=container("c1", "app.example.com")))
    await settle(redis, keys, worker)
    moved = ContainerInfo(
        container_id="c1", name="c-c1", rules=(Rule(hostname="app.example.com", service="http://web:8080"),)
    )
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=moved))
    jobs = await settle(redis, keys, worker)

    assert [type(j) for j in jobs] == [SyncTunnelIngress], "the DNS record does not depend on the service"
    assert isinstance(jobs[0], SyncTunnelIngress)
    assert [r.service for r in jobs[0].rules] == ["http://web:8080"]
    doc = (await rule_records(redis, keys))["app.example.com"]
    assert (doc.status, doc.service) == ("active", "http://web:8080")
