"""A 2,000-container burst from 20 agents across 3 replicas: few jobs, the right final state, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import redis.asyncio as aioredis

from flareport_common.keys import GROUP_RECONCILER, Keys
from flareport_common.messages import (
    AgentEnrolled,
    ContainerStart,
    EventMessage,
    SyncDnsZone,
    SyncTunnelIngress,
)
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, Replicas, all_drained, container, rule_records, settle
from fptest.waiting import wait_for

AGENTS = 20
PER_AGENT = 100
ZONES = 5


def hostname(agent: int, n: int) -> str:
    return f"app-{agent}-{n}.zone{n % ZONES}.test"


def burst() -> list[EventMessage]:
    return [
        ContainerStart(agent_id=f"a{a}", seq=n + 1, container=container(f"c{a}-{n}", hostname(a, n)))
        for n in range(PER_AGENT)
        for a in range(AGENTS)
    ]


async def enrol_all(redis: aioredis.Redis, keys: Keys, worker: FakeDnsWorker) -> None:
    await Producer(redis).send_many(keys.intents, [AgentEnrolled(agent_id=f"a{a}") for a in range(AGENTS)])
    await settle(redis, keys, worker)


async def assert_final_state(redis: aioredis.Redis, keys: Keys, worker: FakeDnsWorker) -> None:
    for a in range(AGENTS):
        job = worker.latest(f"tunnel:tun-a{a}")
        assert isinstance(job, SyncTunnelIngress)
        expected = sorted(hostname(a, n) for n in range(PER_AGENT))
        assert [r.hostname for r in job.rules] == expected, f"tunnel of agent a{a} must carry all its 100 rules"
    for z in range(ZONES):
        job = worker.latest(f"zone:zone{z}.test")
        assert isinstance(job, SyncDnsZone)
        assert len(job.records) == AGENTS * PER_AGENT // ZONES, f"zone{z}.test must have 400 records"
        owners = {r.name: r.tunnel_id for r in job.records}
        assert all(owners[hostname(a, n)] == f"tun-a{a}" for a in range(AGENTS) for n in range(z, PER_AGENT, ZONES))
    docs = await rule_records(redis, keys)
    assert Counter(d.status for d in docs.values()) == Counter({"active": AGENTS * PER_AGENT})


async def test_burst_ends_in_at_most_two_jobs_per_changed_target(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol_all(redis, keys, worker)
    worker.jobs.clear()
    await Producer(redis).send_many(keys.events, burst())
    # The worker is slower than the burst: it answers only once every event is handled.
    await wait_for(lambda: all_drained(redis, keys), timeout=90, what="the burst to be handled")
    await settle(redis, keys, worker)

    per_target = worker.per_target(SyncTunnelIngress, SyncDnsZone)
    assert set(per_target) == {f"tunnel:tun-a{a}" for a in range(AGENTS)} | {f"zone:zone{z}.test" for z in range(ZONES)}
    assert max(per_target.values()) <= 2, f"jobs per target: {per_target}"
    await assert_final_state(redis, keys, worker)


def spawn_replica(settings: ReconcilerSettings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": settings.common.redis_url,
        "FLAREPORT_KEY_PREFIX": settings.common.key_prefix,
        "FLAREPORT_HEALTH_PORT": "0",
        "FLAREPORT_CLAIM_IDLE_SECONDS": str(settings.claim_idle_seconds),
        "FLAREPORT_SWEEP_INTERVAL_SECONDS": "0.1",
        "LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "flareport_cli.main", "reconciler"], env=env)


async def test_replica_killed_mid_burst_loses_nothing(
    redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings, worker: FakeDnsWorker
) -> None:
    victim = spawn_replica(settings)
    survivors = await Replicas(settings, count=2).start()
    try:
        await enrol_all(redis, keys, worker)

        async def victim_working() -> bool:
            consumers = await redis.xinfo_consumers(keys.events, GROUP_RECONCILER)
            return any(c["name"].decode().startswith("reconciler-") and int(c["pending"]) > 0 for c in consumers)

        await Producer(redis).send_many(keys.events, burst())
        await wait_for(victim_working, timeout=30, what="the subprocess replica to hold events of the burst")
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL

        await wait_for(lambda: all_drained(redis, keys), timeout=90, what="the survivors to take over the burst")
        await settle(redis, keys, worker)
        await wait_for(lambda: _no_dirty(redis, keys), timeout=30, what="hostnames left dirty by the victim")
        await settle(redis, keys, worker)
        await assert_final_state(redis, keys, worker)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        await survivors.stop()


async def _no_dirty(redis: aioredis.Redis, keys: Keys) -> bool:
    return await redis.zcard(keys.dirty_hostnames) == 0
