"""An admin's override as claims are resolved (``claimstore.HostnameClaims.effective``): containers' claims on its
path only, never a manual rule, never written into the stored claim."""

from __future__ import annotations

import msgspec

from flareport_common.messages.rules import AccessSpec, OriginOptions, Rule, RuleOverride
from flareport_reconciler.claimstore import OVERRIDE, decode_hash
from flareport_reconciler.resolution import Claim

LABELS = AccessSpec(policy="bypass")


def stored(claim: Claim) -> bytes:
    return b"1000|agent:a1|" + msgspec.json.encode(claim)


def test_an_override_applies_to_container_claims_on_its_path_only() -> None:
    root = Claim(
        source="agent:a1/c1",
        agent_id="a1",
        claimed_at=1,
        rule=Rule(hostname="app.example.com", service="http://web:80", access=LABELS),
    )
    api = Claim(
        source="agent:a1/c1",
        agent_id="a1",
        claimed_at=1,
        rule=Rule(hostname="app.example.com", service="http://web:80", path="/api"),
    )
    manual = Claim(source="manual:mr_1", manual_rule_id="mr_1", tunnel_id="t1", claimed_at=1,
                   rule=Rule(hostname="app.example.com", service="http://wiki:80"))  # fmt: skip
    override = RuleOverride(service="https://web:8443", origin=OriginOptions(no_tls_verify=True), access=AccessSpec())
    raw = {
        root.claim_id: stored(root),
        api.claim_id: stored(api),
        manual.claim_id: stored(manual),
        OVERRIDE: msgspec.json.encode(override),
    }
    host = decode_hash(raw)
    assert [c.rule for c in host.claims] == [root.rule, api.rule, manual.rule], "the stored claims are as reported"
    effective = {c.source + (c.rule.path or ""): c for c in host.effective}
    overridden = effective["agent:a1/c1"]
    assert (overridden.rule.service, overridden.rule.origin, overridden.rule.access) == (
        "https://web:8443",
        OriginOptions(no_tls_verify=True),
        None,
    ), "an empty Access override removes the labels' app"
    assert overridden.overridden == ("service", "origin", "access")
    assert effective["agent:a1/c1/api"] == api, "another path keeps its labels"
    assert effective["manual:mr_1"] == manual, "a manual rule is the admin's own: never overridden"


def test_a_field_left_out_keeps_the_labels_and_unknown_admin_fields_are_not_claims() -> None:
    root = Claim(source="agent:a1/c1", agent_id="a1", claimed_at=1,
                 rule=Rule(hostname="app.example.com", service="http://web:80", access=LABELS))  # fmt: skip
    later = b'{"from":"a later release"}'
    host = decode_hash({root.claim_id: stored(root), OVERRIDE: b'{"service":"http://web:81"}', "!later": later})
    [claim] = host.effective
    assert (claim.rule.service, claim.rule.access, claim.overridden) == ("http://web:81", LABELS, ("service",))
