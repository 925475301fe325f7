"""Inside a burst of one agent's events, its contact is recorded once: what this replica recorded is remembered.

A contact that changes nothing but the time moves only the last-seen set, so the record's ``last_seen`` may be
minutes old while the agent talks; without the memo every batch of a burst would read the record and move the set.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flareport_common.readmodel import AgentRecord
from flareport_reconciler.agents import contact_worth_recording
from flareport_reconciler.contacts import RecentContacts

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_batch_right_after_a_contact_this_replica_recorded_records_nothing_again() -> None:
    record = AgentRecord(agent_id="a1", display_name="a1", status="active", last_seen=AT - timedelta(minutes=5))
    contacts = RecentContacts()
    assert contact_worth_recording(record, AT, contacts.get("a1")), "the record alone says minutes ago"
    contacts.put("a1", AT)
    assert not contact_worth_recording(record, AT + timedelta(milliseconds=300), contacts.get("a1"))
    assert contact_worth_recording(record, AT + timedelta(seconds=2), contacts.get("a1")), "a second later: again"


def test_an_offline_agent_is_always_worth_recording_whatever_was_remembered() -> None:
    record = AgentRecord(agent_id="a1", display_name="a1", status="offline", last_seen=AT)
    assert contact_worth_recording(record, AT + timedelta(milliseconds=10), AT)


def test_the_memo_keeps_the_newest_time_and_forgets_the_agent_heard_from_least_recently() -> None:
    contacts = RecentContacts(size=2)
    contacts.put("a1", AT)
    contacts.put("a1", AT - timedelta(seconds=5))  # an older message handled late
    assert contacts.get("a1") == AT
    contacts.put("a2", AT)
    contacts.put("a1", AT + timedelta(seconds=1))
    contacts.put("a3", AT)
    assert (contacts.get("a1"), contacts.get("a2"), contacts.get("a3")) == (AT + timedelta(seconds=1), None, AT)
