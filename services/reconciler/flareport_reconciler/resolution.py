"""Resolution of one hostname's claims: who publishes it, who is in conflict, who is denied. Pure, no I/O.

A *claim* is one source (a container's rule, or a manual rule) wanting ``hostname + path`` routed through a
tunnel. Claims are resolved per hostname, because a hostname is one DNS record and so can point at one tunnel:

* claims that may not publish the hostname at all (unknown or retired agent, not enrolled, outside its
  allow-lists, a wildcard or apex it may not publish, a denied origin, a ``zonename`` that does not hold the
  hostname, an admin's assignment to another owner) are *denied*;
* the earliest remaining claim (``claimed_at``, then claim id for a stable tie-break) decides the hostname's
  *owner* (an agent, or an explicit tunnel for manual rules). Claims of another owner are *conflicts* — "first
  claim wins" — and so is a second claim of the same ``hostname + path`` by the same owner;
* a winner whose Access labels cannot be resolved is *blocked*, and so, then, is every other winner of the
  hostname (fail closed: see ``hold_back``).

What the winners make of each Cloudflare target is ``targets``'s business; here only the verdicts are decided.

Invariants (tested with Hypothesis in ``tests/unit/reconciler/test_reconciler_resolution.py``):

1. one decision per claim, whatever the claims are;
2. the decisions depend on the *set* of claims, not on the order they are given in;
3. every winner and every blocked claim has the same owner, and that owner is the owner of the earliest claim
   that is not denied;
4. at most one winner per path;
5. a denied claim takes no place in the order: taking it away changes no other claim's verdict;
6. either no claim is blocked or no claim wins;
7. with an admin's assignment, no claim of another owner wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from flareport_common import access
from flareport_common.access import AccessError, AccessFacts
from flareport_common.messages.cfjobs import AccessPolicyDef, DesiredAccessApp
from flareport_common.messages.rules import Rule
from flareport_common.validate import inside
from flareport_reconciler.origins import origin_denial


class Claim(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One source's wish for ``rule.hostname + rule.path``, as stored in the hostname's claims hash."""

    source: str  # "agent:<agent id>/<container id>" or "manual:<rule id>"
    rule: Rule
    claimed_at: float  # server time of the first claim: the earliest claim of a hostname wins
    agent_id: str | None = None  # served through this agent's tunnel
    tunnel_id: str | None = None  # or through this explicit tunnel (manual rules)
    container_id: str | None = None
    container_name: str | None = None
    manual_rule_id: str | None = None
    delete_at: float | None = None  # set while the container is stopped (grace period)
    # The fields an admin's override set instead of the labels (``claimstore.HostnameClaims.effective``); never
    # stored with the claim.
    overridden: tuple[str, ...] = ()

    @property
    def claim_id(self) -> str:
        return f"{self.source}#{self.rule.path or ''}"

    @property
    def owner(self) -> str:
        return f"agent:{self.agent_id}" if self.agent_id else f"tunnel:{self.tunnel_id}"


@dataclass(frozen=True, slots=True)
class AgentView:
    """What planning needs to know about an agent."""

    agent_id: str
    tunnel_id: str | None = None
    allowed_zones: tuple[str, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    # May the agent publish wildcard names (``*.example.com``) / a zone's apex? Admin-only, off by default.
    allow_wildcard: bool = False
    allow_apex: bool = False
    # Origin kinds the admin allows this agent beyond the default policy (global setting plus the agent's own;
    # see ``origins.py``), e.g. "unix", "bastion", "link-local", "metadata".
    origin_allow: frozenset[str] = frozenset()
    # Only an enrolled agent's claims can win a hostname: a pending key must not squat names.
    enrolled: bool = True


@dataclass(frozen=True, slots=True)
class AccessCatalog:
    """What resolving ``access.*`` labels needs: the admin's access groups by id, and the account facts."""

    groups: Mapping[str, AccessPolicyDef]
    facts: AccessFacts = field(default_factory=AccessFacts)


NO_ACCESS = AccessCatalog(groups={})

# ``blocked``: the claim owns its place (first claim wins) but nothing is published for the hostname, because an
# Access label of the owner's cannot be resolved with certainty (fail closed).
Verdict = Literal["winner", "conflict", "denied", "blocked"]


@dataclass(frozen=True, slots=True)
class Decision:
    claim: Claim
    verdict: Verdict
    reason: str | None = None
    tunnel_id: str | None = None  # the tunnel serving it (None until the agent has one)
    app: DesiredAccessApp | None = None  # the resolved Access app of a winner (None: no app)


def zone_of(rule: Rule) -> str:
    """The ``zonename`` label if given, else the last two labels of the hostname (a heuristic; see module doc)."""
    if rule.zone_name:
        return rule.zone_name.strip(".").lower()
    labels = rule.hostname.strip(".").lower().split(".")
    return ".".join(labels[-2:])


def allowed(hostname: str, agent: AgentView) -> bool:
    """Empty lists allow every name; otherwise the hostname itself must lie inside a listed zone or suffix. The
    rule's ``zonename`` label never counts: the agent chooses it."""
    if not agent.allowed_zones and not agent.allowed_suffixes:
        return True
    return any(inside(hostname, name) for name in (*agent.allowed_zones, *agent.allowed_suffixes))


def denial(claim: Claim, agent: AgentView | None, assigned: str | None) -> str | None:
    """Why ``claim`` may not publish its hostname at all, or None. Agents' own rules (not an admin's manual
    rule pinned to an agent) are held to the agent's policy: enrolment, allow-lists, wildcard and apex flags,
    allowed origins."""
    rule = claim.rule
    if claim.agent_id is not None and agent is None:
        return f"agent {claim.agent_id} is not known"
    if rule.zone_name and not inside(rule.hostname, rule.zone_name):
        return f"hostname {rule.hostname} is not inside its zone {rule.zone_name}"
    if assigned is not None and claim.owner != assigned:
        return f"hostname {rule.hostname} is assigned by an admin to {assigned}"
    if agent is None or claim.manual_rule_id is not None:
        return None
    if not agent.enrolled:
        return f"agent {agent.agent_id} is not enrolled: an admin must enrol it before it can publish hostnames"
    if not allowed(rule.hostname, agent):
        zones = ", ".join(agent.allowed_zones) or "-"
        suffixes = ", ".join(agent.allowed_suffixes) or "-"
        return (
            f"hostname {rule.hostname} is outside what agent {agent.agent_id} may publish "
            f"(zones: {zones}; suffixes: {suffixes})"
        )
    if rule.hostname.startswith("*.") and not agent.allow_wildcard:
        return (
            f"wildcard hostname {rule.hostname}: agent {agent.agent_id} may not publish wildcard names "
            "(an admin can allow it: agent policy allow_wildcard)"
        )
    if rule.hostname.strip(".").lower() == zone_of(rule) and not agent.allow_apex:
        return (
            f"hostname {rule.hostname} is a zone apex: agent {agent.agent_id} may not publish apex names "
            "(an admin can allow it: agent policy allow_apex)"
        )
    return origin_denial(rule.service, agent.origin_allow, agent_id=agent.agent_id)


def tunnel_for(claim: Claim, agents: Mapping[str, AgentView]) -> str | None:
    if claim.agent_id is not None:
        agent = agents.get(claim.agent_id)
        return agent.tunnel_id if agent else None
    return claim.tunnel_id


def resolve_hostname(
    claims: Iterable[Claim],
    agents: Mapping[str, AgentView],
    *,
    assigned: str | None = None,
    catalog: AccessCatalog = NO_ACCESS,
) -> list[Decision]:
    """Decide every claim on one hostname: winner, conflict (first claim wins), denied (the agent's policy, or
    an admin's assignment of the hostname to another owner) or blocked (see ``hold_back``). Denied claims never
    take a place in the order, so a claim nobody may publish (a pending agent's, say) cannot squat a name."""
    ordered = sorted(claims, key=lambda c: (c.claimed_at, c.claim_id))
    decisions: list[Decision] = []
    owner: Claim | None = None
    by_path: dict[str, Claim] = {}
    for claim in ordered:
        agent = agents.get(claim.agent_id) if claim.agent_id else None
        reason = denial(claim, agent, assigned)
        if reason is not None:
            decisions.append(Decision(claim, "denied", reason))
            continue
        if owner is None:
            owner = claim
        if claim.owner != owner.owner:
            reason = f"hostname {claim.rule.hostname} is already published by {owner.source}"
            decisions.append(Decision(claim, "conflict", reason))
            continue
        path = claim.rule.path or ""
        first = by_path.get(path)
        if first is not None:
            decisions.append(Decision(claim, "conflict", f"{claim.rule.key} is already published by {first.source}"))
            continue
        by_path[path] = claim
        decisions.append(_with_access(Decision(claim, "winner", None, tunnel_for(claim, agents)), catalog))
    return hold_back(decisions)


def _with_access(decision: Decision, catalog: AccessCatalog) -> Decision:
    rule = decision.claim.rule
    try:
        app = access.resolve(rule.hostname, rule.path, rule.access, catalog.groups, catalog.facts)
    except AccessError as exc:
        return Decision(decision.claim, "blocked", f"{exc.label}: {exc.reason}", decision.tunnel_id)
    return Decision(decision.claim, "winner", None, decision.tunnel_id, app)


def hold_back(decisions: list[Decision]) -> list[Decision]:
    """Fail closed per hostname: when one winning rule's Access cannot be resolved, none of the hostname's rules
    is published (a path rule left out would fall through to another rule of the same host, unprotected)."""
    blocked = [d for d in decisions if d.verdict == "blocked"]
    if not blocked:
        return decisions
    why = f"held back: {blocked[0].claim.rule.key} has an Access error ({blocked[0].reason})"
    return [Decision(d.claim, "blocked", why, d.tunnel_id) if d.verdict == "winner" else d for d in decisions]


def winners(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if d.verdict == "winner"]
