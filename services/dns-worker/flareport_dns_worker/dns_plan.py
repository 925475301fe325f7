"""DNS planning: what to write in one zone so that it holds exactly the records Flareport wants.

external-dns style: ``plan_dns(current, desired, owner, managed)`` is a pure function over the records
currently on the relevant names, the wanted records, our owner id and the names this target wrote before;
it returns the changes and the conflicts. No I/O, so every ownership rule is unit-tested directly.

Ownership is explicit and conservative:

* every record we create carries the comment ``managed-by=flareport owner=<owner_id>`` (Cloudflare Free
  allows 100 characters of comment, so nothing else goes in it);
* we update or delete only records that carry our marker *and* our owner id;
* a foreign record (no marker, or another owner's) on a wanted name is a conflict reported per hostname,
  never overwritten — unless the wanted record says ``adopt``, which takes it over explicitly;
* one exception, adopted without being asked: a record with no comment at all that is already exactly what we
  would write (a proxied CNAME to the wanted tunnel, alone on its name). It routes the name to a tunnel whose
  configuration only Flareport writes, so it serves nothing Flareport does not decide; DockFlare leaves its records
  like that. Taking it over adds our marker in place (no delete, no gap in resolution) and is reported as an
  adoption (``plan.adopted``). A record with any comment, or any other shape, stays a conflict;
* names we no longer want are cleaned up only if this target wrote them (``managed``) and the record
  still carries our marker; a foreign record on such a name is left alone;
* with ``prune=False`` (the control plane is rebuilding after a loss of its data and may not know every rule
  yet) such names are kept instead, and stay managed, so the first plan with ``prune=True`` removes them.

Only A, AAAA and CNAME records can collide with a proxied CNAME (Cloudflare's 81053/81054), so only those
types are looked at; TXT, MX and friends on the same name are not ours and not in the way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from flareport_common.messages.cfresults import CfError

MARKER_PREFIX = "managed-by=flareport owner="
_MARKER = re.compile(r"(?:^|\s)managed-by=flareport owner=(\S+)")
COLLIDING_TYPES = frozenset({"A", "AAAA", "CNAME"})
CONFLICT_CODE = 81053


def marker(owner: str) -> str:
    return MARKER_PREFIX + owner


def owner_of(comment: str | None) -> str | None:
    """The owner id in a record comment, or None when the record carries no Flareport marker."""
    if not comment:
        return None
    found = _MARKER.search(comment)
    return found.group(1) if found else None


def tunnel_target(tunnel_id: str) -> str:
    return f"{tunnel_id}.cfargotunnel.com"


class DnsRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record as Cloudflare reports it (only the fields the plan needs)."""

    id: str
    name: str
    type: str
    content: str = ""
    proxied: bool = False
    comment: str | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> DnsRecord:
        return cls(
            id=str(raw["id"]),
            name=str(raw["name"]).lower().rstrip("."),
            type=str(raw["type"]).upper(),
            content=str(raw.get("content") or "").lower().rstrip("."),
            proxied=bool(raw.get("proxied")),
            comment=raw.get("comment") or None,
        )


@dataclass(frozen=True, slots=True)
class Wanted:
    """One proxied CNAME wanted in this zone."""

    name: str
    tunnel_id: str
    adopt: bool = False


@dataclass(frozen=True, slots=True)
class Post:
    name: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Patch:
    record_id: str
    name: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    record_id: str
    name: str


@dataclass(slots=True)
class DnsPlan:
    deletes: list[Delete] = field(default_factory=list)
    patches: list[Patch] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    conflicts: list[CfError] = field(default_factory=list)
    # Names whose foreign record the plan takes over in place (see the module docstring), with what it was.
    adopted: dict[str, str] = field(default_factory=dict)
    # Names this target manages after the plan is applied: wanted names it holds, names it could not clean, and
    # names it kept because the plan does not prune.
    managed: set[str] = field(default_factory=set)

    @property
    def writes(self) -> int:
        return len(self.deletes) + len(self.patches) + len(self.posts)

    def batches(self, size: int) -> list[DnsPlan]:
        """Chunks of at most ``size`` operations, deletes first (Cloudflare's own order within a batch) so that
        a name freed by a delete in one chunk is posted in the same or a later chunk.
        """
        ops: list[Delete | Patch | Post] = [*self.deletes, *self.patches, *self.posts]
        chunks: list[DnsPlan] = []
        for start in range(0, len(ops), size):
            chunk = DnsPlan()
            for op in ops[start : start + size]:
                if isinstance(op, Delete):
                    chunk.deletes.append(op)
                elif isinstance(op, Patch):
                    chunk.patches.append(op)
                else:
                    chunk.posts.append(op)
            chunks.append(chunk)
        return chunks


def record_body(wanted: Wanted, owner: str) -> dict[str, Any]:
    return {
        "type": "CNAME",
        "name": wanted.name,
        "content": tunnel_target(wanted.tunnel_id),
        "proxied": True,
        "ttl": 1,
        "comment": marker(owner),
    }


def _matches(record: DnsRecord, wanted: Wanted, owner: str) -> bool:
    return (
        record.type == "CNAME"
        and record.content == tunnel_target(wanted.tunnel_id)
        and record.proxied
        and record.comment == marker(owner)
    )


def _conflict(wanted: Wanted, foreign: Sequence[DnsRecord]) -> CfError:
    first = foreign[0]
    other = owner_of(first.comment)
    whose = f"owned by Flareport instance {other!r}" if other else "not managed by Flareport"
    return CfError(
        code=CONFLICT_CODE,
        message=(
            f"{first.type} record {first.name} -> {first.content or '?'} already exists and is {whose}; "
            "left untouched (set adopt to take it over)"
        ),
        hostname=wanted.name,
        kind="conflict",
    )


def adoptable(wanted: Wanted, relevant: Sequence[DnsRecord]) -> DnsRecord | None:
    """The one record on the name if it is already what we would write, only without any comment."""
    if len(relevant) != 1:
        return None
    record = relevant[0]
    shaped = record.type == "CNAME" and record.proxied and record.content == tunnel_target(wanted.tunnel_id)
    return record if shaped and not record.comment else None


def _plan_wanted(plan: DnsPlan, wanted: Wanted, records: Sequence[DnsRecord], owner: str) -> None:
    if len(records) == 1 and _matches(records[0], wanted, owner):
        # The name holds exactly our record as we would write it: the general path below comes to the same (ours,
        # nothing foreign, nothing to write: an owner id holds no whitespace, so the marker names it), and this is
        # what nearly every name of a large zone is at every job.
        plan.managed.add(wanted.name)
        return
    relevant = [r for r in records if r.type in COLLIDING_TYPES]
    ours = [r for r in relevant if owner_of(r.comment) == owner]
    foreign = [r for r in relevant if owner_of(r.comment) != owner]
    body = record_body(wanted, owner)
    found = adoptable(wanted, relevant) if foreign else None
    if found is not None:
        plan.managed.add(wanted.name)
        plan.patches.append(Patch(found.id, wanted.name, body))
        plan.adopted[wanted.name] = (
            f"CNAME {found.name} -> {found.content} already pointed to this tunnel without an owner "
            "(e.g. made by DockFlare); ownership comment added in place"
        )
        return
    if foreign and not wanted.adopt:
        plan.conflicts.append(_conflict(wanted, foreign))
        # Our own leftovers on a name someone else now holds would be invalid anyway; keep managing them.
        if ours:
            plan.managed.add(wanted.name)
        return
    plan.managed.add(wanted.name)
    if wanted.adopt and foreign:
        # Taking over: reuse one CNAME in place (no gap in resolution), delete the other colliding records.
        keep = next((r for r in [*ours, *foreign] if r.type == "CNAME"), None)
        for record in relevant:
            if record is not keep:
                plan.deletes.append(Delete(record.id, record.name))
        if keep is None:
            plan.posts.append(Post(wanted.name, body))
        elif not _matches(keep, wanted, owner):
            plan.patches.append(Patch(keep.id, wanted.name, body))
        return
    if not ours:
        plan.posts.append(Post(wanted.name, body))
        return
    keep = next((r for r in ours if r.type == "CNAME"), ours[0])
    for record in ours:
        if record is not keep:
            plan.deletes.append(Delete(record.id, record.name))
    if keep.type != "CNAME":
        plan.deletes.append(Delete(keep.id, keep.name))
        plan.posts.append(Post(wanted.name, body))
    elif not _matches(keep, wanted, owner):
        plan.patches.append(Patch(keep.id, wanted.name, body))


def plan_dns(
    current: Mapping[str, Sequence[DnsRecord]],
    desired: Iterable[Wanted],
    owner: str,
    managed: Iterable[str] = (),
    *,
    prune: bool = True,
) -> DnsPlan:
    """Changes that make ``current`` hold exactly ``desired`` among the records this target owns.

    ``current`` maps a (lower-case) name to the records on it; names missing from it are taken as empty.
    ``managed`` names the records this target wrote before: ours among them that are no longer wanted go,
    unless ``prune`` is False, in which case they are kept and remain in ``plan.managed``.
    """
    plan = DnsPlan()
    wanted_by_name: dict[str, Wanted] = {}
    for wanted in desired:
        wanted_by_name[wanted.name.lower().rstrip(".")] = Wanted(
            wanted.name.lower().rstrip("."), wanted.tunnel_id, wanted.adopt
        )
    for name in sorted(wanted_by_name):
        _plan_wanted(plan, wanted_by_name[name], current.get(name, ()), owner)
    for name in sorted(set(managed) - set(wanted_by_name)):
        for record in current.get(name, ()):
            if record.type in COLLIDING_TYPES and owner_of(record.comment) == owner:
                if prune:
                    plan.deletes.append(Delete(record.id, record.name))
                else:
                    # Kept, and still this target's: the next pruning plan must find it to remove it.
                    plan.managed.add(name)
    return plan
