"""Rebuilding after Redis lost its data: an agent that runs a tunnel we have no record of gets its enrolment back
(after the dns-worker checked its token), and while the recovery hold lasts jobs keep what they do not list;
when it ends every target is planned again and leftovers may go."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages import (
    AgentEnrolled,
    AgentRegistered,
    ContainerStart,
    EnsureTunnel,
    StartTunnel,
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
    reconciler_settings,
    settle,
)
from fptest.waiting import wait_for

TOKEN_SHA = hashlib.sha256(b"token-of-tun-x").hexdigest()


def claim(agent_id: str, tunnel_id: str = "tun-x") -> AgentRegistered:
    return AgentRegistered(agent_id=agent_id, display_name=agent_id, tunnel_id=tunnel_id, tunnel_token_sha256=TOKEN_SHA)


@pytest.fixture
async def held(redis_server: LocalRedis, prefix: str) -> AsyncIterator[Replicas]:
    """Two replicas with a 2 s recovery hold (the default is 10 minutes)."""
    settings = reconciler_settings(redis_server.url, prefix, recovery_hold_seconds=2)
    group = await Replicas(settings, count=2).start()
    yield group
    await group.stop()


async def test_an_agent_running_a_tunnel_we_lost_gets_its_enrolment_back(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await Producer(redis).send(keys.events, claim("a1"))
    jobs = await settle(redis, keys, worker)

    ensure = [j for j in jobs if isinstance(j, EnsureTunnel)]
    assert [(j.agent_id, j.tunnel_id, j.create, j.token_sha256) for j in ensure] == [("a1", "tun-x", False, TOKEN_SHA)]
    record = await agent_record(redis, keys, "a1")
    assert record is not None and (record.status, record.tunnel_id) == ("active", "tun-x")
    assert record.tunnel_created_by_flareport is False, "an adopted tunnel is never deleted by a decommission"
    assert [type(c) for c in await commands(redis, keys, "a1")] == [StartTunnel]


async def test_a_known_enrolment_is_not_replaced_by_a_claim(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    producer = Producer(redis)
    await producer.send(keys.events, AgentRegistered(agent_id="a1", display_name="a1"))
    await producer.send(keys.intents, AgentEnrolled(agent_id="a1", tunnel_name="t-a1"))
    await settle(redis, keys, worker)
    await producer.send(keys.events, claim("a1", tunnel_id="someone-elses"))
    jobs = await settle(redis, keys, worker)
    assert [j for j in jobs if isinstance(j, EnsureTunnel)] == []
    record = await agent_record(redis, keys, "a1")
    assert record is not None and record.tunnel_id == "tun-a1"


async def test_during_the_hold_jobs_keep_the_unlisted_and_after_it_every_target_is_planned_again(
    redis: aioredis.Redis, keys: Keys, held: Replicas, worker: FakeDnsWorker
) -> None:
    # What the API records when it restores a key Redis lost.
    await redis.set(keys.keys_recovered_at, f"{time.time():.3f}")
    producer = Producer(redis)
    await producer.send(keys.events, claim("a1"))
    await settle(redis, keys, worker)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=container("c1", "app.example.com")))
    jobs = await settle(redis, keys, worker)
    syncs = [j for j in jobs if isinstance(j, SyncDnsZone | SyncTunnelIngress)]
    assert syncs and all(not j.prune for j in syncs), "nothing unlisted may be removed while agents report again"

    async def pruning_jobs() -> bool:
        new = await settle(redis, keys, worker)
        return any(isinstance(j, SyncDnsZone) and j.prune for j in new) or any(
            isinstance(j, SyncDnsZone) and j.prune for j in worker.jobs
        )

    await wait_for(pruning_jobs, timeout=30, what="the zone planned again with pruning once the 2 s hold ended")
    zone = worker.latest("zone:example.com")
    tunnel = worker.latest("tunnel:tun-x")
    assert isinstance(zone, SyncDnsZone) and zone.prune and [r.name for r in zone.records] == ["app.example.com"]
    assert isinstance(tunnel, SyncTunnelIngress) and tunnel.prune
