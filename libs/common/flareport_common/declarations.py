"""Comparing an admin's declarations (access groups, manual rules) with what a deployment already holds.

Pure: plain JSON-like values in, verdicts out. Two features bring declarations from a file into a running
deployment and must answer the same way: ``flareport import dockflare`` (a DockFlare state, compared in the CLI
with what the API lists) and restoring a Flareport backup (compared in the API before anything is written). Both
report each object as ``create`` (missing), ``unchanged`` (present and equal) or ``conflict`` (present and
different: never overwritten), so running either twice changes nothing the second time.

Equality ignores what is merely spelled differently: unset parts (None, False, "", [], {}) are left out before
comparing, an access group's decision defaults to ``allow``, and a rule without a ``zone_name`` matches a stored
rule whose zone the API filled in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

Action = Literal["create", "unchanged", "conflict"]
GROUP_FIELDS = ("name", "decision", "include", "exclude", "require", "session_duration")
_UNSET: tuple[Any, ...] = (None, False, "", [], {})


def compact(value: Any) -> Any:
    """``value`` (JSON-like) with the unset fields of its objects left out, recursively, so stored and planned
    compare equal. Lists are kept as they are: their items are opaque values (Access rule objects such as
    ``{"everyone": {}}``, whose empty value is their meaning)."""
    if isinstance(value, Mapping):
        return {k: c for k, v in value.items() if (c := compact(v)) not in _UNSET}
    if isinstance(value, list | tuple):
        return list(value)
    return value


def rule_key(rule: Mapping[str, Any]) -> str:
    """A rule's identity in a deployment: hostname + path (one manual rule per key)."""
    return str(rule["hostname"]) + str(rule.get("path") or "")


def same_group(wanted: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    def norm(body: Mapping[str, Any], key: str) -> Any:
        value = body.get(key)
        if key == "decision":
            return value or "allow"
        return list(value) if isinstance(value, list | tuple) and value else (value or None)  # [], None: none

    return all(norm(wanted, k) == norm(have, k) for k in GROUP_FIELDS)


def same_rule(
    wanted: Mapping[str, Any], have: Mapping[str, Any], fields: Sequence[str] = ("rule", "tunnel_id")
) -> bool:
    """Whether two manual rules (``{"rule": {...}, "tunnel_id": ..., "agent_id": ...}``) publish the same thing,
    comparing ``fields``."""
    mine = compact({f: wanted.get(f) for f in fields})
    theirs = compact({f: have.get(f) for f in fields})
    if "zone_name" not in mine.get("rule", {}):
        theirs.get("rule", {}).pop("zone_name", None)
    return bool(mine == theirs)


def group_action(wanted: Mapping[str, Any], existing: Mapping[str, Any] | None) -> Action:
    if existing is None:
        return "create"
    if existing.get("system"):
        return "conflict"
    return "unchanged" if same_group(wanted, existing) else "conflict"


def rule_action(
    wanted: Mapping[str, Any], existing: Mapping[str, Any] | None, fields: Sequence[str] = ("rule", "tunnel_id")
) -> Action:
    if existing is None:
        return "create"
    return "unchanged" if same_rule(wanted, existing, fields) else "conflict"


def entry(kind: str, ident: str, action: str, notes: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """One line of a report: what happens (or happened) to one object."""
    return {"kind": kind, "id": ident, "action": action, "notes": list(notes), **extra}


def summary(objects: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many objects per action, in the order the actions first appear."""
    counts: dict[str, int] = {}
    for item in objects:
        counts[item["action"]] = counts.get(item["action"], 0) + 1
    return counts
