"""An agent's totals across events: containers known and hostnames claimed (``agentquota``)."""

from __future__ import annotations

from datetime import UTC, datetime

from flareport_common.messages import ContainerInfo, ContainerStart, ContainerStop
from flareport_reconciler.agentquota import Limits, check
from flareport_reconciler.inventory import AgentInventory, apply_all

LIMITS = Limits(containers=3, hostnames=4)
AT = datetime(2026, 1, 1, tzinfo=UTC)


def started(*cids: str) -> AgentInventory:
    events = [
        ContainerStart(agent_id="a", seq=i + 1, container=ContainerInfo(container_id=c, name=c), occurred_at=AT)
        for i, c in enumerate(cids)
    ]
    return apply_all(AgentInventory(), events)


def test_new_containers_beyond_the_limit_are_dropped_in_id_order() -> None:
    after = started("c1", "c2", "c3")
    refusal = check(LIMITS, 1, 0, {}, after.containers, {"c1", "c2", "c3"}, {})
    assert refusal.dropped == {"c3"} and not refusal.unclaimed
    assert refusal.errors is not None and "FLAREPORT_AGENT_MAX_CONTAINERS" in refusal.errors["c3"].reason


def test_a_known_container_changing_is_never_dropped_for_the_containers_limit() -> None:
    before = started("c1").containers
    after = started("c1", "c1").containers
    assert check(LIMITS, 3, 0, before, after, {"c1"}, {}).dropped == frozenset()


def test_hostnames_beyond_the_limit_leave_the_container_unpublished_and_the_rest_counted() -> None:
    after = started("c1", "c2", "c3").containers
    gained = {"c1": frozenset({"a", "b"}), "c2": frozenset({"c", "d", "e"}), "c3": frozenset({"f"})}
    refusal = check(LIMITS, 0, 1, {}, after, {"c1", "c2", "c3"}, gained)
    assert refusal.unclaimed == {"c2"} and refusal.dropped == frozenset()
    assert refusal.errors is not None and "limit of 4" in refusal.errors["c2"].reason


def test_a_stop_of_an_unknown_container_counts_like_any_new_container() -> None:
    # Stops of containers that never existed are state too: over the limit they are not stored at all.
    stop = ContainerStop(agent_id="a", seq=9, container_id="ghost", occurred_at=AT)
    after = apply_all(AgentInventory(), [stop]).containers
    assert check(LIMITS, 3, 0, {}, after, {"ghost"}, {}).dropped == {"ghost"}
    assert check(LIMITS, 2, 0, {}, after, {"ghost"}, {}).dropped == frozenset()
