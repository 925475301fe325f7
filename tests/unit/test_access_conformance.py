"""The Access conformance table (fptest.access_table): DockFlare's documented label sets and edge cases, parsed by
the agent's label parser and resolved by the reconciler's planning core, give DockFlare's outcome or a stricter one
with an error. The same table runs through the whole stack in tests/e2e/test_e2e_access_labels.py."""

from __future__ import annotations

from typing import Any

import pytest

from flareport_agent.labels import parse_container
from flareport_common.access import AccessFacts, group_definition
from flareport_reconciler.resolution import AccessCatalog, AgentView, Claim, Decision, resolve_hostname
from fptest.access_table import GROUPS, OWNER, ROWS, Row, container_labels, rule_path

CATALOG = AccessCatalog(
    groups={gid: group_definition(g, gid) for gid, g in GROUPS.items()},
    facts=AccessFacts(owner_email=OWNER, otp_idp_id="otp-1"),
)
AGENTS = {"a1": AgentView("a1", tunnel_id="t1")}


def outcome(decision: Decision) -> tuple[Any, ...]:
    if decision.verdict != "winner":
        return ("error", decision.reason)
    app = decision.app
    if app is None:
        return ("none",)
    if app.reusable:
        assert not app.inline, "never both kinds of policy in one app"
        return ("groups", tuple(ref.group_id for ref in app.reusable))
    return ("inline", tuple(p.decision for p in app.inline))


def _decide(row: Row, catalog: AccessCatalog) -> tuple[dict[str | None, Decision], dict[str, str]]:
    info = parse_container(container_labels(row), container_id="c1", name="app")
    assert info is not None
    claims = [Claim(source="agent:a1/c1", rule=r, claimed_at=1.0, agent_id="a1", container_id="c1") for r in info.rules]
    decisions = resolve_hostname(claims, AGENTS, catalog=catalog)
    return {d.claim.rule.path: d for d in decisions}, {e.label: e.reason for e in info.errors}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.row)
def test_each_label_set_resolves_as_in_dockflare_or_stricter(row: Row) -> None:
    by_path, label_errors = _decide(row, CATALOG)
    for which, expected in row.expected.items():
        path = rule_path(row, which)
        if expected[0] == "label":
            assert path not in by_path, f"{row.row}: a rule whose label does not parse is not sent"
            assert any(expected[1] in reason for reason in label_errors.values()), (row.row, label_errors)
            continue
        got = outcome(by_path[path])
        if expected[0] == "error":
            assert got[0] == "error" and expected[1] in str(got[1]), (row.row, got)
        else:
            assert got == expected, (row.row, which, got)


def test_authenticated_default_is_the_owner_by_one_time_pin() -> None:
    row = next(r for r in ROWS if r.row == "D6")
    by_path, _ = _decide(row, CATALOG)
    app = by_path[None].app
    assert app is not None
    policy = app.reusable[0].policy
    assert (policy.decision, policy.include, policy.require) == (
        "allow",
        ({"login_method": {"id": "otp-1"}},),
        ({"email": {"email": OWNER}},),
    )
    assert app.allowed_idps == ("otp-1",)


@pytest.mark.parametrize(
    ("facts", "missing"),
    [(AccessFacts(otp_idp_id="otp-1"), "owner's email"), (AccessFacts(owner_email=OWNER), "One-time PIN")],
)
def test_authenticate_fails_closed_without_the_owner_or_one_time_pin(facts: AccessFacts, missing: str) -> None:
    row = next(r for r in ROWS if r.row == "D6")
    by_path, _ = _decide(row, AccessCatalog(groups=CATALOG.groups, facts=facts))
    got = outcome(by_path[None])
    assert got[0] == "error" and missing in str(got[1]), got


def test_a_group_without_include_fails_closed_instead_of_letting_everyone_in() -> None:
    row = next(r for r in ROWS if r.row == "D1")
    empty = {**CATALOG.groups, "admin-users": group_definition({"decision": "allow"}, "admin-users")}
    by_path, _ = _decide(row, AccessCatalog(groups=empty, facts=CATALOG.facts))
    assert outcome(by_path[None])[0] == "error"
