"""An agent's totals: how many containers it may have known at once and how many hostnames it may claim, across
all its events. Pure, no I/O.

The API bounds each request (one inventory, one batch); a stolen key could still add containers and hostnames one
start at a time, for as long as it likes. Here the totals are checked as a change is applied: a container that
would go over a limit is not published (its claims are not written) and carries a label error naming the limit,
so the agent's page and ``flareport agents show`` say why. Nothing else of the agent is affected, and it is
published as soon as the agent reports it again below the limit. Counting is from what Redis holds
(``Keys.agent_containers``, ``Keys.agent_hostnames``), so it is exact for containers and, for hostnames, may count
one that another container of the agent already claims: near the limit it errs on the side of refusing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flareport_common.messages.rules import RuleError
from flareport_reconciler.inventory import ContainerEntry

QUOTA_LABEL = "flareport.enable"  # the label the error is shown against: the container as a whole


@dataclass(frozen=True, slots=True)
class Limits:
    containers: int
    hostnames: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Containers of one change that go over a limit: ``dropped`` are not stored at all (new containers beyond
    the containers limit), ``unclaimed`` are stored but publish nothing (beyond the hostnames limit)."""

    dropped: frozenset[str] = frozenset()
    unclaimed: frozenset[str] = frozenset()
    errors: Mapping[str, RuleError] | None = None


def check(
    limits: Limits,
    known_containers: int,
    known_hostnames: int,
    before: Mapping[str, ContainerEntry],
    after: Mapping[str, ContainerEntry],
    changed: Iterable[str],
    hostnames_of: Mapping[str, frozenset[str]],
) -> Refusal:
    """Which ``changed`` containers go over the agent's limits. ``hostnames_of`` maps a changed container to the
    hostnames its new claims add (those it did not claim before). Containers are taken in id order, so replicas
    applying the same change decide alike."""
    dropped: set[str] = set()
    unclaimed: set[str] = set()
    errors: dict[str, RuleError] = {}
    containers, hostnames = known_containers, known_hostnames
    for cid in sorted(changed):
        if cid not in before and cid in after:
            if containers >= limits.containers:
                dropped.add(cid)
                errors[cid] = RuleError(
                    label=QUOTA_LABEL,
                    reason=f"not published: the agent already has {containers} containers, its limit is "
                    f"{limits.containers} (FLAREPORT_AGENT_MAX_CONTAINERS)",
                )
                continue
            containers += 1
        added = len(hostnames_of.get(cid, frozenset()))
        if added and hostnames + added > limits.hostnames:
            unclaimed.add(cid)
            errors[cid] = RuleError(
                label=QUOTA_LABEL,
                reason=f"not published: {added} more hostnames would exceed the agent's limit of {limits.hostnames} "
                f"(it claims {hostnames}; FLAREPORT_AGENT_MAX_HOSTNAMES)",
            )
            continue
        hostnames += added
    return Refusal(frozenset(dropped), frozenset(unclaimed), errors or None)
