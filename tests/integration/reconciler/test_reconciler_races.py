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
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import Producer
from flareport_reconciler.handlers import Reconciler
from flareport_reconciler.records import update_agent
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
    started = await r.claims.apply_inventory("a1", [ContainerStart(agent_id="a1", seq=1, container=app)])
    stopped = await r.claims.apply_inventory("a1", [ContainerStop(agent_id="a1", seq=2, container_id="c1")])
    await r.claims.refresh(stopped.marks, stopped.read, stopped.record)
    await r.claims.refresh(started.marks, started.read, started.record)
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

    async def dies(targets: Any, *, force: bool = False) -> None:
        raise ConnectionError("the replica died")

    async def records(targets: Any, *, force: bool = False) -> None:
        touched.append(set(targets))

    app = container("c1", "app.example.com")
    applied = await r.claims.apply_inventory("a1", [ContainerStart(agent_id="a1", seq=1, container=app)])
    monkeypatch.setattr(r.planner, "touch", dies)
    with pytest.raises(ConnectionError):
        await r.claims.refresh(applied.marks, applied.read, applied.record)
    assert set(await rule_records(redis, keys)) == {"app.example.com"}
    mark = await redis.zscore(keys.dirty_hostnames, "app.example.com")
    assert mark is not None, "the hostname stays dirty"

    monkeypatch.setattr(r.planner, "touch", records)
    await r.claims.refresh({"app.example.com": int(mark)})
    expected = {"zone:example.com", "tunnel:tun-a1"}
    assert touched == [expected], "the targets the dead replica did not touch are touched now"
    assert await redis.zcard(keys.dirty_hostnames) == 0
    await r.claims.refresh({"app.example.com": 0})
    assert touched[1:] == [set()], "once touched, they are not touched again for nothing"
