"""Label errors on the agent record, and the pruning floor that keeps late events stale after entries are pruned."""

from __future__ import annotations

from datetime import UTC, datetime

from flareport_common.messages import ContainerInfo, ContainerStart, ContainerStop, Inventory, Rule, RuleError
from flareport_common.readmodel import ContainerLabelErrors
from flareport_reconciler.inventory import AgentInventory, apply_all, apply_event, label_errors, newest_seq, prunable

BAD = RuleError(label="flareport.0.service", reason="not a URL: 'web'")
HOUR = 3600.0


def at(second: float) -> datetime:
    return datetime.fromtimestamp(1_000 + second, UTC)


def info(cid: str, *errors: RuleError) -> ContainerInfo:
    rules = (Rule(hostname=f"{cid}.example.com", service="http://web:80"),)
    return ContainerInfo(container_id=cid, name=f"name-{cid}", rules=rules, errors=errors)


def start(seq: int, cid: str, *errors: RuleError) -> ContainerStart:
    return ContainerStart(agent_id="x", seq=seq, container=info(cid, *errors), occurred_at=at(seq))


def stop(seq: int, cid: str) -> ContainerStop:
    return ContainerStop(agent_id="x", seq=seq, container_id=cid, occurred_at=at(seq))


def test_running_containers_errors_are_listed_and_a_stop_removes_them() -> None:
    inventory, changed = apply_event(AgentInventory(), start(1, "c1", BAD))
    errors = label_errors((), inventory, changed)
    assert errors == (ContainerLabelErrors(container_id="c1", container_name="name-c1", errors=(BAD,)),)
    inventory, changed = apply_event(inventory, start(2, "c2"))
    assert label_errors(errors, inventory, changed) == errors  # a clean container adds nothing
    inventory, changed = apply_event(inventory, stop(3, "c1"))
    assert label_errors(errors, inventory, changed) == ()


def test_fixed_labels_replace_the_errors_and_a_snapshot_drops_vanished_containers() -> None:
    inventory, changed = apply_event(AgentInventory(), start(1, "c1", BAD))
    errors = label_errors((), inventory, changed)
    inventory, changed = apply_event(inventory, start(2, "c1"))  # restarted with fixed labels
    assert label_errors(errors, inventory, changed) == ()
    inventory, changed = apply_event(inventory, start(3, "c2", BAD))
    errors = label_errors((), inventory, changed)
    snapshot = Inventory(agent_id="x", seq=4, containers=(info("c3"),), occurred_at=at(4))
    inventory, changed = apply_event(inventory, snapshot)
    assert label_errors(errors, inventory, changed) == ()


def test_a_late_start_older_than_the_pruning_floor_does_not_resurrect_a_pruned_container() -> None:
    inventory = apply_all(AgentInventory(), [start(1, "c1"), stop(2, "c1")])
    entry = inventory.containers["c1"]
    now = at(2).timestamp() + 2 * HOUR
    assert prunable(entry, now, retention=HOUR, default_grace=600)
    assert not prunable(entry, at(2).timestamp() + 600, retention=HOUR, default_grace=600)
    pruned = AgentInventory(pruned_seq=newest_seq(entry))  # what the background prune leaves behind

    late, changed = apply_event(pruned, start(1, "c1"))
    assert (late, changed) == (pruned, set())
    stale_snapshot = Inventory(agent_id="x", seq=1, containers=(info("c1"),), occurred_at=at(1))
    assert apply_event(pruned, stale_snapshot)[1] == set()
    restarted, changed = apply_event(pruned, start(3, "c1"))
    assert changed == {"c1"} and restarted.containers["c1"].is_running


def test_a_running_container_or_one_inside_its_own_longer_grace_is_never_prunable() -> None:
    running = apply_all(AgentInventory(), [start(1, "c1")]).containers["c1"]
    assert not prunable(running, at(1).timestamp() + 10 * HOUR, retention=HOUR, default_grace=600)
    long_grace = ContainerInfo(container_id="c2", name="c2", grace_period_seconds=int(3 * HOUR))
    event = ContainerStart(agent_id="x", seq=1, container=long_grace, occurred_at=at(1))
    entry = apply_all(AgentInventory(), [event, stop(2, "c2")]).containers["c2"]
    assert not prunable(entry, at(2).timestamp() + 2 * HOUR, retention=HOUR, default_grace=600)
    assert prunable(entry, at(2).timestamp() + 4 * HOUR, retention=HOUR, default_grace=600)


def test_a_stop_of_a_container_never_heard_running_is_forgotten_within_minutes_not_an_hour() -> None:
    # A stolen key can send stops of containers that never existed, at its events rate: each makes an entry (a
    # reordered start must still meet its stop), so such entries go after the short orphan retention.
    orphan = apply_all(AgentInventory(), [stop(5, "ghost")]).containers["ghost"]
    stopped_at = at(5).timestamp()
    assert not prunable(orphan, stopped_at + 60, retention=HOUR, default_grace=600, orphan_retention=180)
    assert prunable(orphan, stopped_at + 181, retention=HOUR, default_grace=600, orphan_retention=180)
    # Within that time a late start older than the stop still finds it: the container stays stopped.
    late, _ = apply_event(apply_all(AgentInventory(), [stop(5, "ghost")]), start(4, "ghost"))
    assert not late.containers["ghost"].is_running
    # A container that really ran keeps its entry for the whole retention.
    ran = apply_all(AgentInventory(), [start(1, "c1"), stop(2, "c1")]).containers["c1"]
    assert not prunable(ran, at(2).timestamp() + 1200, retention=HOUR, default_grace=600, orphan_retention=180)
