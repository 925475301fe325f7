"""The agent lifecycle table: what each message does to an agent's status, and what it leaves alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flareport_common.readmodel import AgentRecord
from flareport_reconciler.agents import STATUSES, TRANSITIONS, after, moved_by, retired, seen, view_of, went_silent

AT = datetime(2026, 1, 1, tzinfo=UTC)


def record(status: str, **fields: object) -> AgentRecord:
    return AgentRecord(agent_id="a1", display_name="a1", status=status, **fields)  # type: ignore[arg-type]


def test_an_offline_agent_heard_again_is_active_with_a_tunnel_and_pending_without() -> None:
    assert after(record("offline", tunnel_id="t1"), "heard") == "active"
    assert after(record("offline"), "heard") == "pending"
    changed = seen("a1", AT)(record("offline", tunnel_id="t1", last_seen=AT))
    assert changed is not None and changed.status == "active"


def test_contact_that_moves_only_the_time_leaves_the_record_to_the_last_seen_set() -> None:
    later = AT + timedelta(minutes=5)
    assert seen("a1", later, seq=7)(record("active", tunnel_id="t1", last_seen=AT)) is None
    changed = seen("a1", later, docker_reachable=False)(record("active", tunnel_id="t1", last_seen=AT))
    assert changed is not None and changed.last_seen == later, "a change is written, with the time it was seen"
    first = seen("a1", later)(record("pending"))
    assert first is not None and first.last_seen == later, "a first contact is written"


def test_contact_does_not_bring_back_a_retired_agent() -> None:
    for status in ("decommissioning", "removed"):
        changed = seen("a1", AT)(record(status, tunnel_id="t1"))
        assert changed is not None and changed.status == status, f"{status} stays {status}"


def test_only_active_and_pending_agents_go_offline_and_not_one_heard_since_the_cutoff() -> None:
    silent = went_silent(cutoff=AT.timestamp())
    assert [s for s in STATUSES if silent(record(s)) is not None] == ["pending", "active"]
    assert silent(record("active", last_seen=datetime(2026, 1, 2, tzinfo=UTC))) is None, "it came back meanwhile"


def test_a_decommission_ends_removed_from_any_status_and_is_ignored_once_removed() -> None:
    assert moved_by("decommission")(record("removed")) is None
    for status in ("pending", "active", "offline", "decommissioning"):
        assert after(record(status), "decommission") == "decommissioning"
    assert {after(record(s), "released") for s in STATUSES} == {"removed"}


@pytest.mark.parametrize("status", ["decommissioned", "something-else"])
def test_a_status_outside_the_lifecycle_is_read_as_removed(status: str) -> None:
    agent = record(status, tunnel_id="t1")
    assert retired(agent) and view_of(agent) is None, "its claims publish nothing"
    assert after(agent, "enrolled") == "pending", "an enrolment brings it back, as it does a removed agent"
    assert after(agent, "tunnel_ensured") is None


def test_the_table_names_only_lifecycle_statuses() -> None:
    for event, moves in TRANSITIONS.items():
        assert set(moves) <= set(STATUSES) and set(moves.values()) <= set(STATUSES), event
    assert "decommissioned" not in STATUSES
