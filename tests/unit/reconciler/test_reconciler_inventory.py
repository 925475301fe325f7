"""Inventory merging by sequence number: stale events lose, snapshots replace, order does not matter."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flareport_common.messages import ContainerDie, ContainerInfo, ContainerStart, ContainerStop, Inventory, Rule
from flareport_reconciler.claims import container_claims
from flareport_reconciler.inventory import AgentInventory, InventoryEvent, apply_all, apply_event
from flareport_reconciler.planning import AgentView, resolve_hostname, tunnel_ingress, zone_records

GRACE = 5.0
POOL = ["a.example.com", "b.example.com", "c.example.org", "d.example.org"]
AGENTS = {"x": AgentView("x", tunnel_id="tx"), "y": AgentView("y", tunnel_id="ty")}


def at(second: float) -> datetime:
    return datetime.fromtimestamp(1_000 + second, UTC)


def info(cid: str, variant: int = 0) -> ContainerInfo:
    host = POOL[(int(cid[-1]) + variant) % len(POOL)]
    return ContainerInfo(container_id=cid, name=cid, rules=(Rule(hostname=host, service=f"http://{cid}:{variant}"),))


def start(seq: int, cid: str, variant: int = 0, agent: str = "x") -> ContainerStart:
    return ContainerStart(agent_id=agent, seq=seq, container=info(cid, variant), occurred_at=at(seq))


def running(inventory: AgentInventory) -> set[str]:
    return {cid for cid, entry in inventory.containers.items() if entry.is_running}


def test_an_older_start_does_not_resurrect_a_container_a_newer_stop_removed() -> None:
    stop = ContainerStop(agent_id="x", seq=5, container_id="c1", occurred_at=at(5))
    inventory = apply_all(AgentInventory(), [stop, start(3, "c1")])
    assert running(inventory) == set()


def test_a_stale_duplicate_changes_nothing() -> None:
    inventory, changed = apply_event(AgentInventory(), start(2, "c1"))
    assert changed == {"c1"}
    again, changed = apply_event(inventory, start(2, "c1"))
    assert (again, changed) == (inventory, set())
    older, changed = apply_event(inventory, start(1, "c1", variant=1))
    assert (older, changed) == (inventory, set())


def test_snapshot_replaces_the_inventory_and_vanished_containers_enter_their_grace_period() -> None:
    inventory = apply_all(AgentInventory(), [start(1, "c1"), start(2, "c2")])
    snapshot = Inventory(agent_id="x", seq=3, containers=(info("c2"), info("c3")), occurred_at=at(3))
    inventory, changed = apply_event(inventory, snapshot)
    assert running(inventory) == {"c2", "c3"}
    gone = inventory.containers["c1"]
    assert gone.delete_at(GRACE) == at(3).timestamp() + GRACE
    assert gone.published(at(3).timestamp() + 1, GRACE)
    assert not gone.published(at(3).timestamp() + GRACE, GRACE)
    assert changed == {"c1", "c2", "c3"}


def test_restart_within_the_grace_period_cancels_the_deletion() -> None:
    stop = ContainerStop(agent_id="x", seq=2, container_id="c1", occurred_at=at(2))
    inventory = apply_all(AgentInventory(), [start(1, "c1"), stop, start(3, "c1")])
    entry = inventory.containers["c1"]
    assert entry.is_running and entry.delete_at(GRACE) is None


def test_a_label_overrides_the_grace_period() -> None:
    labelled = ContainerInfo(container_id="c1", name="c1", grace_period_seconds=30)
    die = ContainerDie(agent_id="x", seq=2, container_id="c1", exit_code=1, occurred_at=at(2))
    inventory = apply_all(
        AgentInventory(), [ContainerStart(agent_id="x", seq=1, container=labelled, occurred_at=at(1)), die]
    )
    assert inventory.containers["c1"].delete_at(GRACE) == at(2).timestamp() + 30


def _desired(inventories: dict[str, AgentInventory], now: float) -> Any:
    by_host: dict[str, list[Any]] = defaultdict(list)
    for agent, inventory in inventories.items():
        for cid, entry in inventory.containers.items():
            for claim in container_claims(agent, cid, entry, now, GRACE).values():
                by_host[claim.rule.hostname].append(claim)
    decisions = [d for host in sorted(by_host) for d in resolve_hostname(by_host[host], AGENTS)]
    return (
        {t: tunnel_ingress(t, decisions) for t in ("tx", "ty")},
        {z: zone_records(z, decisions) for z in ("example.com", "example.org")},
        sorted((d.claim.claim_id, d.verdict, d.claim.delete_at) for d in decisions),
    )


step = st.tuples(
    st.sampled_from(["x", "y"]),
    st.sampled_from(["start", "stop", "die", "snapshot"]),
    st.sampled_from(["c0", "c1", "c2"]),
    st.integers(min_value=0, max_value=2),
    st.frozensets(st.sampled_from(["c0", "c1", "c2"])),
)


def _events(steps: list[tuple[str, str, str, int, frozenset[str]]]) -> list[InventoryEvent]:
    seqs: dict[str, int] = defaultdict(int)
    events: list[InventoryEvent] = []
    for n, (agent, kind, cid, variant, listed) in enumerate(steps):
        seqs[agent] += 1
        seq, when = seqs[agent], at(n)
        if kind == "start":
            container = info(cid, variant)
            events.append(ContainerStart(agent_id=agent, seq=seq, container=container, occurred_at=when))
        elif kind == "stop":
            events.append(ContainerStop(agent_id=agent, seq=seq, container_id=cid, occurred_at=when))
        elif kind == "die":
            events.append(ContainerDie(agent_id=agent, seq=seq, container_id=cid, occurred_at=when))
        else:
            containers = tuple(info(c, variant) for c in sorted(listed))
            events.append(Inventory(agent_id=agent, seq=seq, containers=containers, occurred_at=when))
    return events


def _apply(events: list[InventoryEvent]) -> dict[str, AgentInventory]:
    inventories = {"x": AgentInventory(), "y": AgentInventory()}
    for event in events:
        inventories[event.agent_id], _ = apply_event(inventories[event.agent_id], event)
    return inventories


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=14).flatmap(lambda s: st.tuples(st.just(s), st.permutations(range(len(s))))))
def test_any_order_of_the_same_events_gives_the_same_desired_state(case: tuple[list[Any], list[int]]) -> None:
    steps, order = case
    events = _events(steps)
    in_order = _apply(events)
    shuffled = _apply([events[i] for i in order])
    assert shuffled == in_order
    for now in (0.0, len(events) / 2, float(len(events)), len(events) + GRACE + 1):
        assert _desired(shuffled, at(now).timestamp()) == _desired(in_order, at(now).timestamp())


def test_hostnames_differing_only_in_case_are_one_hostname_and_conflict() -> None:
    shouting = ContainerInfo(container_id="c1", name="c1", rules=(Rule(hostname="App.Example.COM.", service="x"),))
    quiet = ContainerInfo(container_id="c2", name="c2", rules=(Rule(hostname="app.example.com", service="y"),))
    first = apply_all(AgentInventory(), [ContainerStart(agent_id="x", seq=1, container=shouting, occurred_at=at(1))])
    second = apply_all(AgentInventory(), [ContainerStart(agent_id="y", seq=1, container=quiet, occurred_at=at(2))])
    claims = [
        *container_claims("x", "c1", first.containers["c1"], at(3).timestamp(), GRACE).values(),
        *container_claims("y", "c2", second.containers["c2"], at(3).timestamp(), GRACE).values(),
    ]
    assert {c.rule.hostname for c in claims} == {"app.example.com"}
    assert [d.verdict for d in resolve_hostname(claims, AGENTS)] == ["winner", "conflict"]
