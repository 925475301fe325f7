"""Who may win a hostname: enrolment, allow-lists on the name itself, wildcard and apex flags, admin assignment,
and the stored claim order that agent data cannot forge."""

from __future__ import annotations

import msgspec

from flareport_common.messages import Rule
from flareport_common.messages.rules import AccessSpec
from flareport_reconciler.claimstore import ASSIGNED, decode_hash, decode_value, encode_value
from flareport_reconciler.resolution import AgentView, Claim, resolve_hostname
from flareport_reconciler.targets import zone_records

AGENTS = {
    "a1": AgentView("a1", tunnel_id="t1"),
    "a2": AgentView("a2", tunnel_id="t2"),
    "pending": AgentView("pending", enrolled=False),
    "fenced": AgentView("fenced", tunnel_id="t3", allowed_zones=("example.test",)),
    "free": AgentView("free", tunnel_id="t4", allow_wildcard=True, allow_apex=True),
}


def claim(agent: str, hostname: str, at: float, *, cid: str = "c1", manual: bool = False, **rule: object) -> Claim:
    return Claim(
        source=f"manual:{cid}" if manual else f"agent:{agent}/{cid}",
        rule=Rule(hostname=hostname, service="http://web:80", **rule),  # type: ignore[arg-type]
        claimed_at=at,
        agent_id=agent,
        container_id=None if manual else cid,
        manual_rule_id=cid if manual else None,
    )


def verdicts(claims: list[Claim], assigned: str | None = None) -> list[tuple[str, str]]:
    return [(d.claim.source, d.verdict) for d in resolve_hostname(claims, AGENTS, assigned=assigned)]


def test_a_pending_agents_earlier_claim_neither_wins_nor_blocks_an_enrolled_agent() -> None:
    result = verdicts([claim("pending", "app.example.test", 1.0), claim("a1", "app.example.test", 2.0)])
    assert result == [("agent:pending/c1", "denied"), ("agent:a1/c1", "winner")]


def test_the_allow_list_checks_the_hostname_not_the_zone_label_the_agent_chose() -> None:
    forged = claim("fenced", "pwn.victim.test", 1.0, zone_name="example.test")
    decisions = resolve_hostname([forged], AGENTS)
    assert decisions[0].verdict == "denied"
    assert decisions[0].reason is not None and "not inside its zone" in decisions[0].reason
    outside = resolve_hostname([claim("fenced", "pwn.victim.test", 1.0)], AGENTS)
    assert outside[0].verdict == "denied" and "outside what agent fenced may publish" in str(outside[0].reason)
    assert verdicts([claim("fenced", "app.example.test", 1.0)]) == [("agent:fenced/c1", "winner")]


def test_wildcards_and_apex_names_need_the_admins_flag_for_agents_but_not_for_manual_rules() -> None:
    for hostname in ("*.example.test", "example.test"):
        assert verdicts([claim("a1", hostname, 1.0)]) == [("agent:a1/c1", "denied")], hostname
        assert verdicts([claim("free", hostname, 1.0)]) == [("agent:free/c1", "winner")], hostname
        assert verdicts([claim("a1", hostname, 1.0, manual=True)]) == [("manual:c1", "winner")], hostname


def test_a_denied_origin_is_a_per_rule_denial_naming_the_policy() -> None:
    metadata = Claim(
        source="agent:a1/c1",
        rule=Rule(hostname="meta.example.test", service="http://169.254.169.254"),
        claimed_at=1.0,
        agent_id="a1",
    )
    decision = resolve_hostname([metadata], AGENTS)[0]
    assert decision.verdict == "denied" and "origin policy" in str(decision.reason)


def test_an_admins_assignment_beats_an_earlier_claim() -> None:
    claims = [claim("a1", "app.example.test", 1.0), claim("a2", "app.example.test", 2.0)]
    assert verdicts(claims, assigned="agent:a2") == [("agent:a1/c1", "denied"), ("agent:a2/c1", "winner")]
    assert verdicts(claims) == [("agent:a1/c1", "winner"), ("agent:a2/c1", "conflict")]


def test_an_agents_adopt_flag_never_reaches_the_zone_job() -> None:
    mine = claim("a1", "app.example.test", 1.0, adopt=True)
    manual = claim("a1", "admin.example.test", 1.0, manual=True, adopt=True)
    records = zone_records("example.test", resolve_hostname([mine], AGENTS) + resolve_hostname([manual], AGENTS))
    assert {r.name: r.adopt for r in records} == {"app.example.test": False, "admin.example.test": True}


def test_the_stored_order_comes_from_the_prefix_never_from_the_claims_json() -> None:
    # Agent data may contain a "claimed_at" key anywhere (an Access custom rule); it is data, not the order.
    forged = msgspec.structs.replace(
        claim("a2", "app.example.test", 0.0),
        rule=Rule(
            hostname="app.example.test",
            service="http://web:80",
            access=AccessSpec(custom_rules=({"claimed_at": 0, "email": {"email": "x@example.test"}},)),
        ),
    )
    stored = b"5000|agent:a2|" + encode_value(forged)
    assert decode_value(stored).claimed_at == 5.0
    read = decode_hash([ASSIGNED.encode(), b"agent:a1", b"agent:a2/c1#", stored])
    assert read.assigned == "agent:a1" and [c.claimed_at for c in read.claims] == [5.0]


def test_a_claim_stored_before_prefixes_existed_still_reads() -> None:
    legacy = encode_value(claim("a1", "app.example.test", 7.5))
    assert decode_value(legacy).claimed_at == 7.5
