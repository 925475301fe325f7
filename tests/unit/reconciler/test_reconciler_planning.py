"""The planning core: conflicts, allow-lists, ordering, indexed and manual rules, zones, Access, versions."""

from __future__ import annotations

from flareport_common.messages import AccessPolicyDef, AccessSpec, DesiredAccessApp, ReusablePolicyRef, Rule
from flareport_reconciler.resolution import AccessCatalog, AgentView, Claim, resolve_hostname, zone_of
from flareport_reconciler.targets import access_app, tunnel_ingress, version_of, zone_records

AGENTS = {
    "a1": AgentView("a1", tunnel_id="t1", allow_wildcard=True),
    "a2": AgentView("a2", tunnel_id="t2", allow_wildcard=True),
    "fenced": AgentView(
        "fenced", tunnel_id="t3", allowed_zones=("example.com",), allowed_suffixes=("dev.example.org",)
    ),
}


def claim(agent: str | None, cid: str, hostname: str, at: float, *, path: str | None = None, **rule: object) -> Claim:
    source = f"agent:{agent}/{cid}" if agent else f"manual:{cid}"
    return Claim(
        source=source,
        rule=Rule(hostname=hostname, service="http://web:80", path=path, **rule),  # type: ignore[arg-type]
        claimed_at=at,
        agent_id=agent,
        container_id=cid if agent else None,
        manual_rule_id=None if agent else cid,
        tunnel_id=None if agent else "t-manual",
    )


def verdicts(claims: list[Claim]) -> list[tuple[str, str, str | None]]:
    return [(d.claim.source, d.verdict, d.reason) for d in resolve_hostname(claims, AGENTS)]


def test_first_claim_of_a_hostname_wins_whatever_the_order_they_are_given_in() -> None:
    early = claim("a1", "c1", "app.example.com", 10.0)
    late = claim("a2", "c2", "app.example.com", 20.0)
    expected = [
        ("agent:a1/c1", "winner", None),
        ("agent:a2/c2", "conflict", "hostname app.example.com is already published by agent:a1/c1"),
    ]
    assert verdicts([late, early]) == expected
    assert verdicts([early, late]) == expected


def test_manual_rule_and_container_conflict_first_claim_wins() -> None:
    manual = claim(None, "m1", "app.example.com", 5.0)
    box = claim("a1", "c1", "app.example.com", 6.0)
    result = verdicts([box, manual])
    assert result[0][:2] == ("manual:m1", "winner")
    assert result[1] == ("agent:a1/c1", "conflict", "hostname app.example.com is already published by manual:m1")


def test_one_agent_may_route_several_paths_of_a_hostname_but_not_the_same_path_twice() -> None:
    root = claim("a1", "c1", "app.example.com", 1.0)
    api = claim("a1", "c2", "app.example.com", 2.0, path="/api")
    dup = claim("a1", "c3", "app.example.com", 3.0, path="/api")
    assert verdicts([root, api, dup]) == [
        ("agent:a1/c1", "winner", None),
        ("agent:a1/c2", "winner", None),
        ("agent:a1/c3", "conflict", "app.example.com/api is already published by agent:a1/c2"),
    ]


def test_allow_lists_deny_hostnames_outside_the_agents_zones_and_suffixes() -> None:
    ok_zone = claim("fenced", "c1", "www.example.com", 1.0)
    ok_suffix = claim("fenced", "c2", "x.dev.example.org", 1.0)
    denied = claim("fenced", "c3", "evil.example.net", 1.0)
    assert [v for _, v, _ in verdicts([ok_zone])] == ["winner"]
    assert [v for _, v, _ in verdicts([ok_suffix])] == ["winner"]
    [(_, verdict, reason)] = verdicts([denied])
    assert verdict == "denied"
    assert reason == (
        "hostname evil.example.net is outside what agent fenced may publish "
        "(zones: example.com; suffixes: dev.example.org)"
    )


def test_a_denied_claim_does_not_take_the_hostname_from_a_later_allowed_one() -> None:
    denied = claim("fenced", "c1", "app.example.net", 1.0)
    allowed = claim("a1", "c2", "app.example.net", 2.0)
    assert [v for _, v, _ in verdicts([denied, allowed])] == ["denied", "winner"]


def test_unknown_or_retired_agents_publish_nothing() -> None:
    [(_, verdict, reason)] = verdicts([claim("ghost", "c1", "a.example.com", 1.0)])
    assert (verdict, reason) == ("denied", "agent ghost is not known")


def test_ingress_order_puts_longer_paths_first_and_wildcards_last() -> None:
    claims = [
        claim("a1", "c1", "*.example.com", 1.0),
        claim("a1", "c2", "app.example.com", 1.0),
        claim("a1", "c3", "app.example.com", 1.0, path="/api"),
        claim("a1", "c4", "app.example.com", 1.0, path="/api/v2"),
        claim("a1", "c5", "b.example.com", 1.0),
    ]
    decisions = [d for c in claims for d in resolve_hostname([c], AGENTS)]
    ordered = [(e.hostname, e.path) for e in tunnel_ingress("t1", decisions)]
    assert ordered == [
        ("app.example.com", "/api/v2"),
        ("app.example.com", "/api"),
        ("app.example.com", None),
        ("b.example.com", None),
        ("*.example.com", None),
    ]


def test_indexed_rules_of_one_container_each_become_an_ingress_entry_and_a_record() -> None:
    hosts = ["a.example.com", "b.example.com", "c.other.org"]
    decisions = [d for i, h in enumerate(hosts) for d in resolve_hostname([claim("a1", "c1", h, float(i))], AGENTS)]
    assert [e.hostname for e in tunnel_ingress("t1", decisions)] == hosts
    assert tunnel_ingress("t2", decisions) == ()
    assert [r.name for r in zone_records("example.com", decisions)] == ["a.example.com", "b.example.com"]
    assert [(r.name, r.tunnel_id) for r in zone_records("other.org", decisions)] == [("c.other.org", "t1")]


def test_manual_rules_use_their_explicit_tunnel() -> None:
    decisions = resolve_hostname([claim(None, "m1", "m.example.com", 1.0)], AGENTS)
    assert [e.source for e in tunnel_ingress("t-manual", decisions)] == ["manual:m1"]


def test_agent_without_a_tunnel_yet_gets_no_record() -> None:
    agents = {"new": AgentView("new")}
    decisions = resolve_hostname([claim("new", "c1", "n.example.com", 1.0)], agents)
    assert [d.verdict for d in decisions] == ["winner"]
    assert zone_records("example.com", decisions) == ()


def test_zone_is_the_zonename_label_else_the_last_two_labels() -> None:
    assert zone_of(Rule(hostname="a.b.Example.COM", service="x")) == "example.com"
    assert zone_of(Rule(hostname="a.b.example.co.uk", service="x", zone_name="example.co.uk")) == "example.co.uk"


def test_access_app_links_the_groups_and_is_none_without_a_spec() -> None:
    spec = AccessSpec(policy="authenticate", groups=("admins",))
    with_access = claim("a1", "c1", "app.example.com", 1.0, access=spec)
    admins = AccessPolicyDef(name="Admins", decision="allow", include=({"email_domain": {"domain": "x.com"}},))
    catalog = AccessCatalog(groups={"admins": admins})
    decisions = resolve_hostname([with_access], AGENTS, catalog=catalog)
    assert access_app("app.example.com", decisions) == DesiredAccessApp(
        hostname="app.example.com", reusable=(ReusablePolicyRef(group_id="admins", policy=admins),)
    ), "the group wins over the policy, as in DockFlare"
    plain = resolve_hostname([claim("a1", "c1", "app.example.com", 1.0)], AGENTS, catalog=catalog)
    assert access_app("app.example.com", plain) is None


def test_an_unknown_group_holds_the_whole_hostname_back() -> None:
    spec = AccessSpec(groups=("missing",))
    protected = claim("a1", "c1", "app.example.com", 1.0, access=spec, path="/admin")
    root = claim("a1", "c2", "app.example.com", 2.0)
    decisions = resolve_hostname([protected, root], AGENTS)
    assert [d.verdict for d in decisions] == ["blocked", "blocked"]
    assert "access group 'missing' does not exist" in (decisions[0].reason or "")
    assert tunnel_ingress("t1", decisions) == () and zone_records("example.com", decisions) == ()
    assert access_app("app.example.com/admin", decisions) is None


def test_version_changes_with_the_desired_state_only() -> None:
    one = resolve_hostname([claim("a1", "c1", "a.example.com", 1.0)], AGENTS)
    again = resolve_hostname([claim("a1", "c1", "a.example.com", 99.0)], AGENTS)
    other = resolve_hostname([claim("a1", "c1", "a.example.com", 1.0, path="/x")], AGENTS)
    assert version_of(tunnel_ingress("t1", one)) == version_of(tunnel_ingress("t1", again))
    assert version_of(tunnel_ingress("t1", one)) != version_of(tunnel_ingress("t1", other))
