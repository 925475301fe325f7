"""Replicas refreshing the same hostname at once: the read model must end up matching the claims.

Three replicas take an agent's messages in any order and at the same time, so one replica's refresh of a hostname
can run while another replica changes that hostname's claims and refreshes it too. Whatever the interleaving, once
everything is handled a rule document exists exactly when a claim for it does.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import AgentEnrolled, AgentRegistered, ContainerStart, ContainerStop
from flareport_common.messages.cfjobs import SyncDnsZone
from flareport_common.messages.cfresults import JobResult
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import Producer
from flareport_common.streams.consumer import Delivery
from flareport_reconciler import spine
from flareport_reconciler.handlers import Reconciler
from flareport_reconciler.records import update_agent
from flareport_reconciler.targets import Target
from fptest.reconciler_harness import FakeDnsWorker, Replicas, container, rule_records, settle

AGENTS = 20
ROUNDS = 5


async def claimed_hostnames(redis: aioredis.Redis, keys: Keys, hostnames: list[str]) -> set[str]:
    found: list[Any] = [await redis.exists(keys.hostname_claims(h)) for h in hostnames]
    return {h for h, exists in zip(hostnames, found, strict=True) if exists}


async def test_a_container_stopped_past_its_grace_while_its_start_is_handled_leaves_no_rule_behind(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    producer = Producer(redis)
    agents = [f"a{n}" for n in range(AGENTS)]
    for agent_id in agents:
        await producer.send(keys.events, AgentRegistered(agent_id=agent_id, display_name=agent_id))
        await producer.send(keys.intents, AgentEnrolled(agent_id=agent_id))
    await settle(redis, keys, worker)

    kept: set[str] = set()
    gone: list[str] = []
    for round_ in range(ROUNDS):
        # Per agent: a container that starts and stops at once (grace 0: its rule goes with the stop) and one that
        # stays, all sent together so that the replicas handle them concurrently, in any order.
        for n, agent_id in enumerate(agents):
            seq = 3 * round_
            app = container(f"app{round_}", f"app{round_}-{n}.example.com", grace=0)
            stays = container(f"kept{round_}", f"kept{round_}-{n}.example.com")
            await producer.send_many(
                keys.events,
                [
                    ContainerStart(agent_id=agent_id, seq=seq + 1, container=app),
                    ContainerStart(agent_id=agent_id, seq=seq + 2, container=stays),
                    ContainerStop(agent_id=agent_id, seq=seq + 3, container_id=f"app{round_}"),
                ],
            )
            kept.add(f"kept{round_}-{n}.example.com")
            gone.append(f"app{round_}-{n}.example.com")
        await settle(redis, keys, worker)

    assert await claimed_hostnames(redis, keys, gone) == set(), "the stopped containers' claims are withdrawn"
    documented = set(await rule_records(redis, keys))
    assert documented - kept == set(), "no rule document is left for a container that stopped"
    assert kept - documented == set(), "every running container's rule is documented"
    assert await redis.zcard(keys.dirty_hostnames) == 0, "every hostname was refreshed to the end"


async def enrolled(redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings) -> Reconciler:
    """A reconciler (no consumers) and agent a1, active with tunnel tun-a1."""
    record = AgentRecord(agent_id="a1", display_name="a1", status="active", tunnel_id="tun-a1")
    await update_agent(redis, keys, "a1", lambda _: record)
    return Reconciler(redis, keys, settings)


async def test_a_refresh_that_read_the_claims_before_a_stop_does_not_bring_the_rule_back_after_the_stop(
    redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings
) -> None:
    # The interleaving the replicas above run into by chance, step by step: the start's transaction reads back
    # the claim, the stop removes it and its refresh completes, and only then does the start's refresh run.
    r = await enrolled(redis, keys, settings)
    app = container("c1", "app.example.com", grace=0)
    started = await r.spine.claims.apply_inventory("a1", [ContainerStart(agent_id="a1", seq=1, container=app)])
    stopped = await r.spine.claims.apply_inventory("a1", [ContainerStop(agent_id="a1", seq=2, container_id="c1")])
    await r.spine.converge(stopped.marks, stopped.read, stopped.record)
    await r.spine.converge(started.marks, started.read, started.record)
    assert await rule_records(redis, keys) == {}, "the late refresh published a rule without a claim"
    assert await redis.zcard(keys.dirty_hostnames) == 0


async def test_targets_a_refresh_did_not_get_to_touch_are_touched_by_the_next_one(
    redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A replica dies after writing the rule document but before touching the zone and the tunnel: the hostname
    # stays dirty, and the refresh that takes it over (the sweeper's) plans them although the document is up to
    # date.
    r = await enrolled(redis, keys, settings)
    touched: list[set[str]] = []

    async def dies(targets: Any, *, force: Any = False, weight: int = 1, catalog: Any = None, run: Any = None) -> None:
        raise ConnectionError("the replica died")

    async def records(
        targets: Any, *, force: Any = False, weight: int = 1, catalog: Any = None, run: Any = None
    ) -> None:
        touched.append({str(t) for t in targets})

    app = container("c1", "app.example.com")
    applied = await r.spine.claims.apply_inventory("a1", [ContainerStart(agent_id="a1", seq=1, container=app)])
    monkeypatch.setattr(r.spine, "touch", dies)
    with pytest.raises(ConnectionError):
        await r.spine.converge(applied.marks, applied.read, applied.record)
    assert set(await rule_records(redis, keys)) == {"app.example.com"}
    mark = await redis.zscore(keys.dirty_hostnames, "app.example.com")
    assert mark is not None, "the hostname stays dirty"

    monkeypatch.setattr(r.spine, "touch", records)
    await r.spine.converge({"app.example.com": int(mark)})
    expected = {"zone:example.com", "tunnel:tun-a1"}
    assert touched == [expected], "the targets the dead replica did not touch are touched now"
    assert await redis.zcard(keys.dirty_hostnames) == 0
    await r.spine.converge({"app.example.com": 0})
    assert touched[1:] == [set()], "once touched, they are not touched again for nothing"


async def answer_directly(r: Reconciler, worker: FakeDnsWorker) -> None:
    """What the dns-worker and a replica's result consumer would do, here and now: answer every job sent (plans
    held for their target's window included: a target written moments ago waits for its window's end)."""
    await r.spine.held_plans_done()
    for job in await worker.pull():
        version = getattr(job, "version", "")
        tag = str(type(job).__struct_config__.tag)
        result = JobResult(job_id=job.id, job_type=tag, target=job.target, version=version, ok=True)
        await r.on_result(result, Delivery(stream="cf-results", message_id="0-1", deliveries=1))


async def test_a_rule_documented_after_its_targets_result_still_becomes_active(
    redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings, worker: FakeDnsWorker
) -> None:
    # Claims (and the targets' indexes) are written before the documents. Another replica may plan the zone and the
    # tunnel from the claims, and get their results, before this replica's refresh writes the document: the
    # CI run that found this had a replica SIGKILLed between the two. The document must still become active.
    r = await enrolled(redis, keys, settings)
    await redis.hset(keys.tunnel_agents, "tun-a1", "a1")  # as the enrolment's result records it
    app = container("c1", "app.example.com")
    applied = await r.spine.claims.apply_inventory("a1", [ContainerStart(agent_id="a1", seq=1, container=app)])
    await r.spine.touch({Target.zone("example.com"), Target.tunnel("tun-a1")})  # the other replica
    await answer_directly(r, worker)
    assert sorted(j.target for j in worker.jobs) == ["tunnel:tun-a1", "zone:example.com"]
    assert await rule_records(redis, keys) == {}, "no document yet when the results came"

    await r.spine.converge(applied.marks, applied.read, applied.record)
    await answer_directly(r, worker)
    [doc] = (await rule_records(redis, keys)).values()
    assert (doc.status, doc.dns_state, doc.ingress_state) == ("active", "active", "active")


async def test_a_result_whose_handler_died_before_the_statuses_is_applied_when_delivered_again(
    redis: aioredis.Redis,
    keys: Keys,
    settings: ReconcilerSettings,
    worker: FakeDnsWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = await enrolled(redis, keys, settings)
    app = container("c1", "app.example.com")
    applied = await r.spine.claims.apply_inventory("a1", [ContainerStart(agent_id="a1", seq=1, container=app)])
    await r.spine.converge(applied.marks, applied.read, applied.record)
    [job] = [j for j in await worker.pull() if isinstance(j, SyncDnsZone)]
    result = JobResult(job_id=job.id, job_type="sync_dns_zone", target=job.target, version=job.version, ok=True)
    delivery = Delivery(stream="cf-results", message_id="0-1", deliveries=1)

    async def dies(*args: Any) -> None:
        raise ConnectionError("the replica died after clearing the job, before the statuses")

    monkeypatch.setattr(spine, "apply_result", dies)
    with pytest.raises(ConnectionError):
        await r.on_result(result, delivery)
    monkeypatch.undo()
    await r.on_result(result, Delivery(stream="cf-results", message_id="0-1", deliveries=2))
    [doc] = (await rule_records(redis, keys)).values()
    assert doc.dns_state == "active", "the redelivered result still sets the record's state"
