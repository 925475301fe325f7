"""Targets and their desired state: what the winning claims make of each Cloudflare target. Pure, no I/O.

A *target* is one thing a Cloudflare job writes as a whole: ``tunnel:<id>`` (the tunnel's ordered ingress rules),
``zone:<name>`` (the proxied CNAMEs Flareport keeps in the zone) or ``access:<hostname><path>`` (one Access
app). ``Target`` is the value type the reconciler passes around; its string form (``str(target)``) is what the
streams, the jobs and the Redis keys carry, unchanged.

Each target's desired state is built only from the decisions of its own hostnames, and its version is a hash of
it, so an unchanged target produces the same version and no job. A hostname's *parts* (``parts_of``) are the
targets its winners are part of, each with a fingerprint of that part: a refresh touches only the targets whose
part changed (a new service touches the tunnel, not the zone).

Invariants (tested with Hypothesis in ``tests/unit/reconciler/test_reconciler_resolution.py``):

1. the desired state and the version of a target do not depend on the order the claims of a hostname, or the
   hostnames, were read in (the decisions of one hostname come in resolution's order: a record's ``source`` is
   that of the hostname's first winner);
2. a tunnel's ingress holds exactly the winners served by that tunnel, exact hostnames before wildcards, for
   one hostname longer paths before shorter ones and the rule without a path last;
3. a zone holds one record per hostname that has a winner with a tunnel in that zone, sorted by name;
4. ``Target.parse(str(t)) == t`` for every target, and the string form is the one on the wire.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec

from flareport_common import access
from flareport_common.messages.cfjobs import AccessPolicyDef, DesiredAccessApp, DesiredRecord, IngressEntry
from flareport_common.messages.rules import AccessSpec
from flareport_reconciler.resolution import Decision, zone_of

TargetKind = Literal["access", "tunnel", "zone"]
KINDS: frozenset[str] = frozenset(get_args(TargetKind))


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One Cloudflare target. Ordered like its string form (kind, then name)."""

    kind: TargetKind
    name: str  # the tunnel id, the zone name, or the rule key (hostname + path) of an Access app

    @classmethod
    def tunnel(cls, tunnel_id: str) -> Target:
        return cls("tunnel", tunnel_id)

    @classmethod
    def zone(cls, zone_name: str) -> Target:
        return cls("zone", zone_name)

    @classmethod
    def access(cls, rule_key: str) -> Target:
        return cls("access", rule_key)

    @classmethod
    def parse(cls, text: str) -> Target | None:
        """The target a string names (``kind:name``), or None when it names none (an unknown kind, no name)."""
        kind, colon, name = text.partition(":")
        if not colon or not name or kind not in KINDS:
            return None
        return cls(kind, name)  # type: ignore[arg-type]  # checked against KINDS just above

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def hostname(self) -> str:
        """The hostname of an ``access`` target (its key up to the path); the name of the others."""
        return self.name.split("/", 1)[0] if self.kind == "access" else self.name

    @property
    def path(self) -> str | None:
        """The path of an ``access`` target's rule (None: the whole hostname)."""
        return self.name[len(self.hostname) :] or None


def parse_all(texts: Iterable[str]) -> list[Target]:
    """The targets among ``texts``, sorted; strings that name none are left out."""
    return sorted(t for t in map(Target.parse, texts) if t is not None)


def _ingress_order(entry: IngressEntry) -> tuple[bool, str, bool, int, str]:
    # cloudflared takes the first matching rule: exact hostnames before wildcards, longer paths before shorter
    # ones and a rule without a path last for its hostname.
    path = entry.path or ""
    return (entry.hostname.startswith("*"), entry.hostname, not path, -len(path), path)


def tunnel_ingress(tunnel_id: str, decisions: Iterable[Decision]) -> tuple[IngressEntry, ...]:
    """The ordered ingress rules of one tunnel, from the decisions of its hostnames. A path that an Access app
    protects is matched as that literal prefix only (``protected``): cloudflared matches paths as unanchored
    regular expressions, and ``/eng`` would otherwise route ``/x/eng`` and ``/engineering``, which the app on
    ``host/eng`` does not cover."""
    entries = [
        IngressEntry(
            hostname=d.claim.rule.hostname,
            service=d.claim.rule.service,
            path=d.claim.rule.path,
            origin=d.claim.rule.origin,
            source=d.claim.source,
            protected=d.app is not None and d.claim.rule.path is not None,
        )
        for d in decisions
        if d.verdict == "winner" and d.tunnel_id == tunnel_id
    ]
    return tuple(sorted(entries, key=_ingress_order))


def zone_records(zone: str, decisions: Iterable[Decision]) -> tuple[DesiredRecord, ...]:
    """One proxied CNAME per hostname of the zone that has a winner with a tunnel."""
    records: dict[str, DesiredRecord] = {}
    for d in decisions:
        if d.verdict != "winner" or d.tunnel_id is None or zone_of(d.claim.rule) != zone:
            continue
        name = d.claim.rule.hostname.lower()
        current = records.get(name)
        # Only an admin's manual rule may adopt a foreign record; an agent's claim never does.
        adopt = (d.claim.rule.adopt and d.claim.manual_rule_id is not None) or (current is not None and current.adopt)
        source = current.source if current is not None else d.claim.source
        records[name] = DesiredRecord(name=name, tunnel_id=d.tunnel_id, adopt=adopt, source=source)
    return tuple(records[name] for name in sorted(records))


HOLD_POLICY = AccessPolicyDef(name="flareport hold: Access error", decision="deny", include=access.EVERYONE)


def access_app(rule_key: str, decisions: Iterable[Decision]) -> DesiredAccessApp | None:
    """The Access app wanted for ``rule_key`` (hostname + path), or None when no winner asks for one."""
    for d in decisions:
        rule = d.claim.rule
        if d.verdict == "winner" and d.tunnel_id is not None and rule.key == rule_key:
            return d.app
    return None


def held_app(rule_key: str, decisions: Iterable[Decision]) -> DesiredAccessApp | None:
    """For a rule held back by an Access error: an app that lets nobody in, so that an app it had is never
    deleted (or weakened) while its routes are being withdrawn; None when the rule is not held back."""
    for d in decisions:
        rule = d.claim.rule
        if d.verdict == "blocked" and rule.key == rule_key and access.wants_app(rule.access):
            return DesiredAccessApp(hostname=rule.hostname, path=rule.path, inline=(HOLD_POLICY,))
    return None


def wants_access(spec: AccessSpec | None) -> bool:
    """Whether a rule's Access labels ask for an app (``default_tld`` or settings alone do not)."""
    return access.wants_app(spec)


def version_of(desired: Any) -> str:
    """A stable hash of a target's desired state; equal state, equal version."""
    encoded = msgspec.json.encode(desired, order="deterministic")
    return hashlib.sha256(encoded).hexdigest()[:20]


def parts_of(decisions: list[Decision]) -> dict[Target, str]:
    """The targets a hostname's winners are part of, each with a fingerprint of that part (sorted by target, so
    that equal parts encode equally whatever order the claims were read in)."""
    parts: dict[Target, str] = {}
    for d in decisions:
        if d.verdict == "blocked" and wants_access(d.claim.rule.access):
            # Held back by an Access error: its app (if it has one) is turned into one that lets nobody in.
            parts[Target.access(d.claim.rule.key)] = "held"
        if d.verdict != "winner":
            continue
        zone = zone_of(d.claim.rule)
        parts[Target.zone(zone)] = version_of(zone_records(zone, decisions))
        if d.tunnel_id is not None:
            parts[Target.tunnel(d.tunnel_id)] = version_of(tunnel_ingress(d.tunnel_id, decisions))
        if d.app is not None:
            key = d.claim.rule.key
            parts[Target.access(key)] = version_of(access_app(key, decisions))
    return dict(sorted(parts.items()))
