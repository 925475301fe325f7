"""Properties of the pure core: resolution of a hostname's claims (``resolution``'s invariants) and the desired
state of targets (``targets``'s invariants), over generated claims, agents' policies and Access labels."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from flareport_common.messages import AccessPolicyDef, AccessSpec, Rule
from flareport_reconciler.resolution import AccessCatalog, AgentView, Claim, Decision, resolve_hostname, zone_of
from flareport_reconciler.targets import KINDS, Target, parse_all, tunnel_ingress, version_of, zone_records

AGENTS = {
    "a1": AgentView("a1", tunnel_id="t1", allow_wildcard=True, allow_apex=True),
    "a2": AgentView("a2", tunnel_id="t2", allowed_zones=("example.com",)),
    "a3": AgentView("a3"),  # enrolled, its tunnel not ensured yet
    "p": AgentView("p", tunnel_id="tp", enrolled=False),
}
CATALOG = AccessCatalog(
    groups={"admins": AccessPolicyDef(name="Admins", decision="allow", include=({"everyone": {}},))}
)
HOSTNAMES = ["app.example.com", "*.example.com", "example.com", "api.example.org"]
SPECS = [None, None, AccessSpec(groups=("admins",)), AccessSpec(groups=("missing",))]


@st.composite
def claims(draw: st.DrawFn, hostname: str) -> Claim:
    manual = draw(st.booleans())
    agent = draw(st.sampled_from([*AGENTS, "ghost"]))
    rule = Rule(
        hostname=hostname,
        service=draw(st.sampled_from(["http://web:80", "http://web:81", "http://169.254.169.254"])),
        path=draw(st.sampled_from([None, "/x", "/x/y"])),
        zone_name=draw(st.sampled_from([None, None, "example.com", "other.test"])),
        access=draw(st.sampled_from(SPECS)),
    )
    at = float(draw(st.integers(min_value=0, max_value=3)))
    if manual:
        rule_id = draw(st.sampled_from(["m0", "m1", "m2"]))
        pinned = draw(st.sampled_from([None, "a1", "a2"]))
        tunnel = None if pinned else draw(st.sampled_from(["t1", "t9"]))
        return Claim(
            source=f"manual:{rule_id}",
            rule=rule,
            claimed_at=at,
            agent_id=pinned,
            tunnel_id=tunnel,
            manual_rule_id=rule_id,
        )
    cid = draw(st.sampled_from(["c0", "c1", "c2"]))
    return Claim(source=f"agent:{agent}/{cid}", rule=rule, claimed_at=at, agent_id=agent, container_id=cid)


def hostname_claims(hostname: str) -> st.SearchStrategy[list[Claim]]:
    # A hostname's claims hash holds one claim per claim id.
    return st.lists(claims(hostname), max_size=8, unique_by=lambda c: c.claim_id)


one_hostname = st.sampled_from(HOSTNAMES).flatmap(
    lambda h: st.tuples(hostname_claims(h), st.sampled_from([None, None, "agent:a1", "agent:a2", "tunnel:t9"]))
)


def resolve(claimed: list[Claim], assigned: str | None = None) -> list[Decision]:
    return resolve_hostname(claimed, AGENTS, assigned=assigned, catalog=CATALOG)


@settings(max_examples=150, deadline=None)
@given(one_hostname, st.randoms(use_true_random=False))
def test_resolution_decides_each_claim_once_whatever_the_order(
    case: tuple[list[Claim], str | None], rnd: object
) -> None:
    claimed, assigned = case
    decisions = resolve(claimed, assigned)
    assert sorted(d.claim.claim_id for d in decisions) == sorted(c.claim_id for c in claimed), "one per claim"
    shuffled = list(claimed)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert resolve(shuffled, assigned) == decisions, "the order the claims were read in decides nothing"


@settings(max_examples=150, deadline=None)
@given(one_hostname)
def test_one_owner_publishes_a_hostname_first_claim_wins_one_winner_per_path(
    case: tuple[list[Claim], str | None],
) -> None:
    claimed, assigned = case
    decisions = resolve(claimed, assigned)
    placed = [d for d in decisions if d.verdict != "denied"]
    publishing = [d for d in decisions if d.verdict in ("winner", "blocked")]
    if placed:
        first = min(placed, key=lambda d: (d.claim.claimed_at, d.claim.claim_id))
        assert {d.claim.owner for d in publishing} <= {first.claim.owner}, "the earliest claim's owner, alone"
        assert publishing, "the earliest claim that is not denied always publishes (or is held back)"
    else:
        assert not publishing
    paths = [d.claim.rule.path for d in decisions if d.verdict == "winner"]
    assert len(paths) == len(set(paths)), "at most one winner per path"
    verdicts = {d.verdict for d in decisions}
    assert not {"winner", "blocked"} <= verdicts, "an Access error holds back every rule of the hostname"
    if assigned is not None:
        assert all(d.claim.owner == assigned for d in publishing), "only the assigned owner publishes"


@settings(max_examples=150, deadline=None)
@given(one_hostname)
def test_a_denied_claim_takes_no_place_in_the_order(case: tuple[list[Claim], str | None]) -> None:
    claimed, assigned = case
    decisions = resolve(claimed, assigned)
    kept = [d.claim for d in decisions if d.verdict != "denied"]
    assert resolve(kept, assigned) == [d for d in decisions if d.verdict != "denied"]


many_hostnames = st.lists(st.sampled_from(HOSTNAMES), min_size=1, max_size=4, unique=True).flatmap(
    lambda hs: st.tuples(*(hostname_claims(h) for h in hs))
)


def decide_all(per_host: tuple[list[Claim], ...]) -> list[Decision]:
    return [d for claimed in per_host for d in resolve(claimed)]


@settings(max_examples=120, deadline=None)
@given(many_hostnames, st.randoms(use_true_random=False))
def test_desired_state_and_versions_do_not_depend_on_the_order_claims_and_hostnames_are_read_in(
    per_host: tuple[list[Claim], ...], rnd: object
) -> None:
    decisions = decide_all(per_host)
    hosts = [list(claimed) for claimed in per_host]
    rnd.shuffle(hosts)  # type: ignore[attr-defined]
    for claimed in hosts:
        rnd.shuffle(claimed)  # type: ignore[attr-defined]
    shuffled = decide_all(tuple(hosts))
    for tunnel in ("t1", "t2", "t9"):
        assert tunnel_ingress(tunnel, shuffled) == tunnel_ingress(tunnel, decisions)
        assert version_of(tunnel_ingress(tunnel, shuffled)) == version_of(tunnel_ingress(tunnel, decisions))
    for zone in ("example.com", "example.org", "other.test"):
        assert version_of(zone_records(zone, shuffled)) == version_of(zone_records(zone, decisions))


@settings(max_examples=120, deadline=None)
@given(many_hostnames)
def test_a_tunnel_routes_its_winners_exact_names_first_longest_path_first(per_host: tuple[list[Claim], ...]) -> None:
    decisions = decide_all(per_host)
    for tunnel in ("t1", "t2", "t9"):
        entries = tunnel_ingress(tunnel, decisions)
        served = {d.claim.rule.key for d in decisions if d.verdict == "winner" and d.tunnel_id == tunnel}
        assert sorted(e.hostname + (e.path or "") for e in entries) == sorted(served)
        wildcard = [e.hostname.startswith("*") for e in entries]
        assert wildcard == sorted(wildcard), "exact hostnames before wildcards"
        by_host: dict[str, list[int]] = defaultdict(list)
        for e in entries:
            by_host[e.hostname].append(len(e.path) if e.path else -1)
        for hostname, lengths in by_host.items():
            assert lengths == sorted(lengths, reverse=True), f"{hostname}: longer paths first, no path last"


@settings(max_examples=120, deadline=None)
@given(many_hostnames)
def test_a_zone_holds_one_record_per_published_hostname_in_it(per_host: tuple[list[Claim], ...]) -> None:
    decisions = decide_all(per_host)
    for zone in ("example.com", "example.org", "other.test"):
        records = zone_records(zone, decisions)
        names = [r.name for r in records]
        assert names == sorted(set(names)), "one record per hostname, sorted"
        published = {
            d.claim.rule.hostname
            for d in decisions
            if d.verdict == "winner" and d.tunnel_id is not None and zone_of(d.claim.rule) == zone
        }
        assert set(names) == published


@given(st.sampled_from(sorted(KINDS)), st.text(min_size=1, max_size=30))
def test_a_target_reads_back_from_its_string_form(kind: str, name: str) -> None:
    target = Target(kind, name)  # type: ignore[arg-type]
    assert Target.parse(str(target)) == target
    assert str(target) == f"{kind}:{name}", "the form on the wire and in keys is unchanged"


def test_a_string_that_names_no_target_is_left_out() -> None:
    assert Target.parse("agent:a1") is None and Target.parse("zone:") is None and Target.parse("zone") is None
    assert parse_all(["zone:b.test", "rule:x", "access:a.test/p", "tunnel:t"]) == [
        Target.access("a.test/p"),
        Target.tunnel("t"),
        Target.zone("b.test"),
    ]
    access = Target.access("app.example.com/admin")
    assert (access.hostname, access.path) == ("app.example.com", "/admin")
    assert (Target.access("app.example.com").path, Target.zone("example.com").hostname) == (None, "example.com")
