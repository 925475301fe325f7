"""A tunnel's plan reads its agent's hostnames with its first reads, from the agent its last plan found: a tunnel
handed to another agent (an admin re-enrolling a host onto an existing tunnel) must be planned from the new agent's
hostnames and record, never from the remembered one's."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import ContainerStart
from flareport_common.messages.cfjobs import SyncTunnelIngress
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ReconcilerSettings
from flareport_reconciler.handlers import Reconciler
from flareport_reconciler.records import update_agent
from fptest.reconciler_harness import FakeDnsWorker, container

from .test_reconciler_races import answer_directly


async def _agent(redis: aioredis.Redis, keys: Keys, agent_id: str, tunnel_id: str | None) -> None:
    record = AgentRecord(agent_id=agent_id, display_name=agent_id, status="active", tunnel_id=tunnel_id)
    await update_agent(redis, keys, agent_id, lambda _: record)
    if tunnel_id is not None:
        await redis.hset(keys.tunnel_agents, tunnel_id, agent_id)  # as the enrolment's result records it


async def _start(r: Reconciler, agent_id: str, seq: int, name: str, hostname: str) -> None:
    start = ContainerStart(agent_id=agent_id, seq=seq, container=container(name, hostname))
    applied = await r.spine.claims.apply_inventory(agent_id, [start])
    await r.spine.converge(applied.marks, applied.read, applied.record)


def _last_ingress(worker: FakeDnsWorker, tunnel_id: str) -> set[str]:
    jobs = [j for j in worker.jobs if isinstance(j, SyncTunnelIngress) and j.tunnel_id == tunnel_id]
    assert jobs, f"no job for tunnel {tunnel_id}"
    return {rule.hostname for rule in jobs[-1].rules}


async def test_a_tunnel_handed_to_another_agent_is_planned_from_the_new_agents_hostnames(
    redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings, worker: FakeDnsWorker
) -> None:
    await _agent(redis, keys, "a1", "tun-x")
    await _agent(redis, keys, "a2", None)
    r = Reconciler(redis, keys, settings)
    await _start(r, "a1", 1, "c1", "one.example.com")
    await answer_directly(r, worker)
    assert _last_ingress(worker, "tun-x") == {"one.example.com"}

    # The host behind tun-x is now a2's: a1 leaves the tunnel, a2 takes it over and starts a container.
    await _agent(redis, keys, "a1", None)
    await _agent(redis, keys, "a2", "tun-x")
    await _start(r, "a2", 1, "c2", "two.example.com")
    await answer_directly(r, worker)
    assert "two.example.com" in _last_ingress(worker, "tun-x"), "planned from the agent the tunnel had before"
