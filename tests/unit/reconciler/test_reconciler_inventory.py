"""Inventory merging by sequence number: stale events lose, snapshots replace, order does not matter."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from flareport_common.messages import ContainerDie, ContainerInfo, ContainerStart, ContainerStop, Inventory, Rule
from flareport_reconciler.claims import container_claims
from flareport_reconciler.inventory import (
    MAX_SNAPSHOTS,
    MAX_STOPS,
    AgentInventory,
    ContainerEntry,
    InventoryEvent,
    Snapshot,
    apply_all,
    apply_event,
)
from flareport_reconciler.resolution import AgentView, resolve_hostname
from flareport_reconciler.targets import tunnel_ingress, zone_records

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


def stop(seq: int, cid: str, when: float | None = None) -> ContainerStop:
    return ContainerStop(agent_id="x", seq=seq, container_id=cid, occurred_at=at(seq if when is None else when))


def die(seq: int, cid: str, when: float | None = None) -> ContainerDie:
    when = seq if when is None else when
    return ContainerDie(agent_id="x", seq=seq, container_id=cid, exit_code=0, occurred_at=at(when))


def snapshot(seq: int, *cids: str, when: float | None = None) -> Inventory:
    containers = tuple(info(c) for c in cids)
    return Inventory(agent_id="x", seq=seq, containers=containers, occurred_at=at(seq if when is None else when))


def test_a_snapshot_does_not_bring_back_a_container_whose_grace_period_ended_long_ago() -> None:
    # c1 stopped at 2 (stop and die), its rules went at 2 + GRACE; the agent restarts at 100 and sends a snapshot.
    inventory = apply_all(AgentInventory(), [start(1, "c1"), stop(2, "c1"), die(3, "c1"), start(4, "c2")])
    before = inventory.containers["c1"].delete_at(GRACE)
    assert before == at(2).timestamp() + GRACE, "the grace period counts from the stop, not from the die after it"
    inventory, _ = apply_event(inventory, snapshot(5, "c2", when=100))
    gone = inventory.containers["c1"]
    assert not gone.is_running
    assert gone.delete_at(GRACE) == before, "a snapshot without a long-gone container must not move its deletion"
    assert not gone.published(at(100).timestamp(), GRACE)
    assert container_claims("x", "c1", gone, at(100).timestamp(), GRACE) == {}, "no rule of it is wanted again"


def test_a_container_that_stopped_just_now_keeps_its_grace_period_from_its_stop_across_a_snapshot() -> None:
    inventory = apply_all(AgentInventory(), [start(1, "c1"), stop(2, "c1", when=10)])
    inventory, _ = apply_event(inventory, snapshot(3, when=12))
    entry = inventory.containers["c1"]
    assert entry.delete_at(GRACE) == at(10).timestamp() + GRACE
    assert entry.published(at(12).timestamp(), GRACE), "still inside the grace period of its real stop"
    assert not entry.published(at(10).timestamp() + GRACE, GRACE), "the snapshot must not extend it"


def test_a_start_heard_after_several_newer_snapshots_learns_the_first_of_them() -> None:
    events: list[InventoryEvent] = [start(1, "c1"), snapshot(2), snapshot(3)]
    in_order = apply_all(AgentInventory(), events)
    backwards = apply_all(AgentInventory(), reversed(events))
    assert backwards == in_order
    assert in_order.containers["c1"].delete_at(GRACE) == at(2).timestamp() + GRACE


def test_a_late_start_between_stops_counts_the_grace_period_from_the_first_stop_after_it() -> None:
    # Stopped (2, 3), gone from a snapshot (4), started again (5) and stopped (6, 7) before a snapshot (8); the
    # start at 5 is delivered last (a reclaimed message).
    events: list[InventoryEvent] = [start(1, "c1"), stop(2, "c1"), die(3, "c1"), snapshot(4)]
    events += [stop(6, "c1"), die(7, "c1"), snapshot(8), start(5, "c1")]
    late = apply_all(AgentInventory(), events)
    assert late == apply_all(AgentInventory(), sorted(events, key=lambda e: e.seq))
    assert late.containers["c1"].delete_at(GRACE) == at(6).timestamp() + GRACE


def test_beyond_the_bounds_the_grace_period_may_count_from_a_later_stop_but_never_an_earlier_one() -> None:
    # More stops before a late start than an entry keeps: the stop right after the start is not known any more.
    late_start = MAX_STOPS + 3
    events: list[InventoryEvent] = [start(1, "c1"), *(snapshot(seq) for seq in range(2, late_start))]
    events += [stop(late_start + 1, "c1"), die(late_start + 2, "c1"), start(late_start, "c1")]
    exact = apply_all(AgentInventory(), sorted(events, key=lambda e: e.seq)).containers["c1"]
    late = apply_all(AgentInventory(), events).containers["c1"]
    assert not late.is_running and not exact.is_running
    assert exact.delete_at(GRACE) == at(late_start + 1).timestamp() + GRACE
    assert (late.delete_at(GRACE) or 0) >= (exact.delete_at(GRACE) or 0)
    # More snapshots before a start than the agent keeps: the container still counts as gone.
    snapshots = [snapshot(seq) for seq in range(2, MAX_SNAPSHOTS + 4)]
    first_heard = apply_all(AgentInventory(), [*snapshots, start(1, "c1")]).containers["c1"]
    assert not first_heard.is_running
    assert (first_heard.delete_at(GRACE) or 0) >= at(2).timestamp() + GRACE


class _SnapshotBefore(msgspec.Struct, frozen=True, kw_only=True):
    # The stored snapshot of the version before the history: replicas of it run beside new ones in an upgrade.
    seq: int
    at: float
    container_ids: frozenset[str]


def test_entries_and_snapshots_stored_before_the_stop_history_still_decode_and_keep_their_stop() -> None:
    rule = '{"hostname":"a.example.com","service":"http://c1"}'
    running = f'{{"seq":1,"at":1001.0,"info":{{"container_id":"c1","name":"c1","rules":[{rule}]}}}}'
    old_entry = msgspec.json.decode(f'{{"running":{running},"stopped":{{"seq":3,"at":1003.0}}}}', type=ContainerEntry)
    old_snapshot = msgspec.json.decode('{"seq":2,"at":1002.0,"container_ids":["c1"]}', type=Snapshot)
    inventory = AgentInventory(containers={"c1": old_entry}, snapshot=old_snapshot)
    inventory, _ = apply_event(inventory, snapshot(4, when=100))
    assert inventory.containers["c1"].delete_at(GRACE) == 1003.0 + GRACE
    assert inventory.snapshot is not None and [m.seq for m in inventory.snapshot.marks] == [4, 2]
    seen_before = msgspec.json.decode(msgspec.json.encode(inventory.snapshot), type=_SnapshotBefore)
    assert (seen_before.seq, seen_before.container_ids) == (4, frozenset()), "the previous version reads it too"


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


# Inside the bounds of the history the merge is exact; what happens beyond them is tested above.
STEPS = min(MAX_STOPS, MAX_SNAPSHOTS) - 2


@settings(max_examples=300, deadline=None)
@given(
    st.lists(step, min_size=1, max_size=STEPS).flatmap(lambda s: st.tuples(st.just(s), st.permutations(range(len(s)))))
)
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
