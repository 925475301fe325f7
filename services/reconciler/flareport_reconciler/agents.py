"""An agent as the reconciler keeps it: its lifecycle, its publishing policy, and the change each message makes to
its record (``AgentRecord``). Pure, no I/O: the store applies a change under an optimistic transaction
(``records.update_agent``), which may call it more than once.

The lifecycle is the table ``TRANSITIONS`` (event -> status before -> status after; an event absent for a status
does not move it):

=================  ==============================================  =================================================
event              from                                            to
=================  ==============================================  =================================================
``heard``          offline                                         active (it has a tunnel) / pending (not yet)
``silent``         active, pending                                 offline (no contact for AGENT_OFFLINE_SECONDS)
``enrolled``       decommissioning, removed                        pending (enrolled again; the tunnel comes next)
``tunnel_ensured`` pending, active, offline                        active
``decommission``   pending, active, offline, decommissioning       decommissioning (again: commands are re-sent)
``released``       any                                             removed (tunnel deleted, or adopted: not ours)
=================  ==============================================  =================================================

A new record starts ``pending``. ``decommissioning`` and ``removed`` are *retired*: their claims are withdrawn and
resolution treats the agent as unknown (``view_of`` is None).

There is no ``decommissioned`` state. The shared status type names one, but no release of the reconciler ever
wrote it: a decommission ends in ``removed`` whether the tunnel was deleted or adopted (Flareport keeps the
record either way, and ``removed`` is what the API lets an admin forget). Giving the same end two names would
make every reader ask which one to expect. A record that carries a status outside the table (``decommissioned``
written by hand, say) is read as ``removed``: retired, failing closed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import msgspec

from flareport_common.messages import AgentEnrolled, AgentPolicyChanged, AgentRegistered, TunnelEnsured
from flareport_common.protocol import AgentStatus
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ReconcilerSettings
from flareport_reconciler.resolution import AgentView

Status = Literal["pending", "active", "offline", "decommissioning", "removed"]
STATUSES: tuple[Status, ...] = get_args(Status)
Event = Literal["heard", "silent", "enrolled", "tunnel_ensured", "decommission", "released"]

TRANSITIONS: Mapping[Event, Mapping[Status, Status]] = {
    "heard": {"offline": "active"},  # "pending" instead when the agent has no tunnel yet: see ``after``
    "silent": {"active": "offline", "pending": "offline"},
    "enrolled": {"decommissioning": "pending", "removed": "pending"},
    "tunnel_ensured": {"pending": "active", "active": "active", "offline": "active"},
    "decommission": dict.fromkeys(("pending", "active", "offline", "decommissioning"), "decommissioning"),
    "released": dict.fromkeys(STATUSES, "removed"),
}
RETIRED: frozenset[Status] = frozenset({"decommissioning", "removed"})

# What the store applies: the current record (None: none yet) to the new one (None: leave it as it is).
AgentUpdate = Callable[[AgentRecord | None], AgentRecord | None]


def status_of(record: AgentRecord) -> Status:
    """The record's place in the lifecycle; a status outside it is read as ``removed`` (see the module doc)."""
    status = record.status
    return status if status in STATUSES else "removed"


def retired(record: AgentRecord) -> bool:
    return status_of(record) in RETIRED


def after(record: AgentRecord, event: Event) -> AgentStatus | None:
    """The status ``event`` moves the record to, or None when the event does not apply in its status."""
    moved: Status | None = TRANSITIONS[event].get(status_of(record))
    if moved == "active" and event == "heard" and record.tunnel_id is None:
        return "pending"
    return moved


# ---- the publishing policy ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyDefaults:
    """What every agent may publish beyond the default policy (the reconciler's settings); each agent's record
    can only widen it."""

    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings: ReconcilerSettings) -> PolicyDefaults:
        return cls(settings.agent_allow_wildcard, settings.agent_allow_apex, settings.agent_origin_allow)


# Set once at start-up (``configure_policy``) rather than passed down: the settings are one per process, and
# every caller of ``view_of`` (planning, refreshes) must see the same policy.
_policy = PolicyDefaults()


def configure_policy(defaults: PolicyDefaults) -> None:
    global _policy
    _policy = defaults


def enrolled(record: AgentRecord) -> bool:
    """Did an admin enrol this agent? Enrolment names its tunnel (or the tunnel it adopts gets its id once
    ensured); a tunnel is never set from what an agent sends. An offline agent stays enrolled."""
    return record.tunnel_id is not None or record.tunnel_name is not None


def view_of(record: AgentRecord, defaults: PolicyDefaults | None = None) -> AgentView | None:
    """What resolution needs of the agent; None for a retired agent (its claims count as unknown)."""
    if retired(record):
        return None
    policy = _policy if defaults is None else defaults
    return AgentView(
        agent_id=record.agent_id,
        tunnel_id=record.tunnel_id,
        allowed_zones=record.allowed_zones,
        allowed_suffixes=record.allowed_suffixes,
        allow_wildcard=record.allow_wildcard or policy.allow_wildcard,
        allow_apex=record.allow_apex or policy.allow_apex,
        origin_allow=policy.origin_allow.union(record.origin_allow),
        enrolled=enrolled(record),
    )


# ---- the change each message makes -------------------------------------------------------------------------------


def registered(message: AgentRegistered) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord:
        if record is None:
            record = AgentRecord(agent_id=message.agent_id, display_name=message.display_name)
            record.registered_at = message.occurred_at
        record.display_name = message.display_name
        record.hostname = message.hostname
        record.version = message.version
        record.capabilities = message.capabilities
        record.last_seen = max(record.last_seen or message.occurred_at, message.occurred_at)
        if record.revoked_at is not None and message.occurred_at > record.revoked_at:
            record.revoked_at = None  # registered with a key issued after the revocation
        return record

    return change


def enrolment_lost(record: AgentRecord | None, message: AgentRegistered) -> bool:
    """An agent that runs a tunnel we have no record of: our data was lost (an enrolment is never forgotten
    otherwise, and a decommissioned agent keeps its record). Its enrolment is to be restored."""
    return (
        bool(message.tunnel_id and message.tunnel_token_sha256)
        and record is not None
        and (record.tunnel_id is None and record.status == "pending")
    )


def seen(
    agent_id: str, at: datetime, *, seq: int | None = None, version: str | None = None, **fields: object
) -> AgentUpdate:
    """Contact from the agent (server time); an offline agent comes back. Skips writes that would change nothing
    but the contact's time and sequence number: the time is kept in the offline detection's sorted set
    (``record_contact`` moves it), and readers take the newer of the two. Rewritten at every heartbeat, the record
    raised the read-model counter 67 times a second at rest with 1,000 agents, and every open admin page re-rendered
    at each of them."""

    def change(record: AgentRecord | None) -> AgentRecord | None:
        fresh = record is None
        if record is None:
            record = AgentRecord(agent_id=agent_id, display_name=agent_id, registered_at=at)
        previous = msgspec.structs.replace(record)
        if record.last_seen is None or at > record.last_seen:
            record.last_seen = at
        if seq is not None:
            record.last_seq = max(record.last_seq, seq)
        if version:
            record.version = version
        for name, value in fields.items():
            setattr(record, name, value)
        record.status = after(record, "heard") or record.status
        if not fresh and only_time_moved(previous, record):
            return None
        return record

    return change


def contact_worth_recording(record: AgentRecord, at: datetime, recorded: datetime | None = None) -> bool:
    """Inside a burst, an event less than a second after the last recorded contact changes nothing worth a write.
    ``recorded``: the latest contact this replica recorded (``contacts.RecentContacts``), newer than the record's
    when only the time moved."""
    if record.status == "offline" or record.last_seen is None:
        return True
    last = record.last_seen if recorded is None else max(record.last_seen, recorded)
    return (at - last).total_seconds() >= 1.0


def only_time_moved(before: AgentRecord, after: AgentRecord) -> bool:
    """Nothing but the contact's time moved (a first contact is written: the record has no time yet)."""
    if before.last_seen is None or after.last_seen is None:
        return False
    return msgspec.structs.replace(before, last_seen=after.last_seen, last_seq=after.last_seq) == after


def went_silent(cutoff: float) -> AgentUpdate:
    """No contact since ``cutoff`` (epoch seconds): an active or pending agent goes offline."""

    def change(record: AgentRecord | None) -> AgentRecord | None:
        if record is None:
            return None
        moved = after(record, "silent")
        if moved is None or (record.last_seen is not None and record.last_seen.timestamp() > cutoff):
            return None  # not concerned, or it came back meanwhile
        record.status = moved
        return record

    return change


def set_policy(record: AgentRecord, message: AgentEnrolled | AgentPolicyChanged) -> None:
    record.allowed_zones = message.allowed_zones
    record.allowed_suffixes = message.allowed_suffixes
    record.allow_wildcard = message.allow_wildcard
    record.allow_apex = message.allow_apex
    record.origin_allow = message.origin_allow


def enrolled_by(message: AgentEnrolled) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord:
        if record is None:
            record = AgentRecord(agent_id=message.agent_id, display_name=message.agent_id)
        set_policy(record, message)
        record.tunnel_name = message.tunnel_name or record.tunnel_name
        record.status = after(record, "enrolled") or record.status
        record.error = None
        return record

    return change


def policy_changed(message: AgentPolicyChanged) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord:
        if record is None:  # registered, not recorded yet: the policy waits in its record
            record = AgentRecord(agent_id=message.agent_id, display_name=message.agent_id)
        set_policy(record, message)
        return record

    return change


def revoked(at: datetime) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord | None:
        if record is None or (record.revoked_at is not None and record.revoked_at >= at):
            return None
        record.revoked_at = at
        return record

    return change


def moved_by(event: Event) -> AgentUpdate:
    """The record moved along the lifecycle by ``event``; left as it is where the event does not apply."""

    def change(record: AgentRecord | None) -> AgentRecord | None:
        if record is None:
            return None
        moved = after(record, event)
        if moved is None:
            return None
        record.status = moved
        return record

    return change


def tunnel_ensured(message: TunnelEnsured) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord | None:
        moved = after(record, "tunnel_ensured") if record is not None else None
        if record is None or moved is None:
            return None
        record.tunnel_id = message.tunnel_id
        record.tunnel_name = message.tunnel_name or record.tunnel_name
        record.tunnel_created_by_flareport = record.tunnel_created_by_flareport or message.created
        record.status = moved
        record.error = None
        return record

    return change


def renamed(name: str) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord | None:
        if record is None:
            return None
        record.display_name = name
        return record

    return change


def failed(reason: str) -> AgentUpdate:
    def change(record: AgentRecord | None) -> AgentRecord | None:
        if record is None:
            return None
        record.error = reason
        return record

    return change
