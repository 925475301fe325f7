"""An admin's forced deletion (``rule_force_deleted``): a stopped container's rule goes at once instead of after
its grace period, only that path of the hostname, and a container that runs again keeps its rule — with 3
replicas."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import ContainerInfo, ContainerStart, ContainerStop, Rule, SyncDnsZone, SyncTunnelIngress
from flareport_common.messages.intents import RuleForceDeleted
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, Replicas, container, rule_records, settle

from .test_reconciler_lifecycle import enrol

HOUR = 3600


def two_paths(cid: str) -> ContainerInfo:
    rules = (
        Rule(hostname="app.example.com", service="http://web:80", path="/api"),
        Rule(hostname="app.example.com", service="http://web:80"),
    )
    return ContainerInfo(container_id=cid, name=f"c-{cid}", rules=rules, grace_period_seconds=HOUR)


async def test_a_forced_deletion_removes_one_stopped_rule_now(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=two_paths("c1")))
    await producer.send(
        keys.events, ContainerStart(agent_id="a1", seq=2, container=container("c2", "gone.example.com", grace=HOUR))
    )
    await producer.send(
        keys.events, ContainerStart(agent_id="a1", seq=3, container=container("c3", "kept.example.com"))
    )
    await settle(redis, keys, worker)
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=4, container_id="c1"))
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=5, container_id="c2"))
    await settle(redis, keys, worker)
    docs = await rule_records(redis, keys)
    assert {k: d.status for k, d in docs.items()} == {
        "app.example.com": "pending_deletion",
        "app.example.com/api": "pending_deletion",
        "gone.example.com": "pending_deletion",
        "kept.example.com": "active",
    }

    await producer.send(keys.intents, RuleForceDeleted(hostname="gone.example.com", requested_by="api"))
    await producer.send(keys.intents, RuleForceDeleted(hostname="app.example.com", path="/api", requested_by="api"))
    # A running container's rule is not the admin's to force away: left as it is.
    await producer.send(keys.intents, RuleForceDeleted(hostname="kept.example.com", requested_by="api"))
    await settle(redis, keys, worker)

    docs = await rule_records(redis, keys)
    assert {k: d.status for k, d in docs.items()} == {
        "app.example.com": "pending_deletion",
        "kept.example.com": "active",
    }, "only the named rules went, the hour-long grace period notwithstanding"
    zone = worker.latest("zone:example.com")
    assert isinstance(zone, SyncDnsZone)
    assert sorted(r.name for r in zone.records) == ["app.example.com", "kept.example.com"]
    tunnel = worker.latest("tunnel:tun-a1")
    assert isinstance(tunnel, SyncTunnelIngress)
    assert [(r.hostname, r.path) for r in tunnel.rules] == [("app.example.com", None), ("kept.example.com", None)]
    assert await redis.zcard(keys.pending_deletions) == 1, "the other path still waits for its grace period"


async def test_a_container_that_runs_again_keeps_its_rule(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    info = container("c1", "app.example.com", grace=HOUR)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=info))
    await producer.send(keys.events, ContainerStop(agent_id="a1", seq=2, container_id="c1"))
    await settle(redis, keys, worker)
    assert (await rule_records(redis, keys))["app.example.com"].status == "pending_deletion"

    # The admin saw it pending; the container came back before the intent was handled.
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=3, container=info))
    await settle(redis, keys, worker)
    await producer.send(keys.intents, RuleForceDeleted(hostname="app.example.com", requested_by="ui:admin"))
    await settle(redis, keys, worker)
    assert (await rule_records(redis, keys))["app.example.com"].status == "active"
    zone = worker.latest("zone:example.com")
    assert isinstance(zone, SyncDnsZone) and [r.name for r in zone.records] == ["app.example.com"]
