"""Access app bodies from labels, the comparison that avoids writes, and the longest zone suffix."""

from __future__ import annotations

from flareport_common.messages.cfjobs import DesiredAccessApp
from flareport_common.messages.rules import AccessSpec
from flareport_dns_worker.access_plan import app_body, app_matches, is_ours
from flareport_dns_worker.zones import longest_suffix

ZONES = {"example.com": "z1", "dev.example.com": "z2", "example.org": "z3"}


def test_bypass_policy_is_everyone_bypass() -> None:
    body = app_body(DesiredAccessApp(hostname="App.example.com", spec=AccessSpec(policy="bypass")), "flareport", {})
    assert body["domain"] == "app.example.com" and body["type"] == "self_hosted" and body["tags"] == ["flareport"]
    assert body["policies"] == [
        {"name": "flareport bypass", "decision": "bypass", "include": [{"everyone": {}}], "precedence": 1}
    ]


def test_authenticate_is_an_allow_policy_and_custom_rules_replace_everyone() -> None:
    plain = app_body(DesiredAccessApp(hostname="a.example.com", spec=AccessSpec(policy="authenticate")), "t", {})
    assert plain["policies"][0]["decision"] == "allow"
    rules = ({"email_domain": {"domain": "example.com"}},)
    custom = app_body(DesiredAccessApp(hostname="a.example.com", spec=AccessSpec(custom_rules=rules)), "t", {})
    assert custom["policies"][0]["include"] == [{"email_domain": {"domain": "example.com"}}]


def test_groups_link_reusable_policies_in_order_and_path_is_part_of_domain() -> None:
    app = DesiredAccessApp(
        hostname="a.example.com",
        path="/admin",
        spec=AccessSpec(groups=("ops", "dev"), session_duration="8h", allowed_idps=("idp1",)),
        groups={"ops": {"include": [{"email": {"email": "o@example.com"}}]}, "dev": {}},
    )
    body = app_body(app, "flareport", {"ops": "p-ops", "dev": "p-dev"})
    assert body["domain"] == "a.example.com/admin"
    assert body["policies"] == [{"id": "p-ops", "precedence": 1}, {"id": "p-dev", "precedence": 2}]
    assert body["session_duration"] == "8h" and body["allowed_idps"] == ["idp1"]


def test_app_as_cloudflare_returns_it_matches_the_wanted_body() -> None:
    wanted = app_body(DesiredAccessApp(hostname="a.example.com", spec=AccessSpec(policy="bypass")), "flareport", {})
    returned = {
        **{k: v for k, v in wanted.items() if k != "policies"},
        "id": "app1",
        "aud": "x",
        "policies": [{**wanted["policies"][0], "id": "p1", "reusable": False, "exclude": [], "require": []}],
    }
    assert app_matches(returned, wanted)
    assert not app_matches({**returned, "session_duration": "1h"}, wanted)
    assert is_ours(returned, "flareport") and not is_ours({"tags": []}, "flareport")


def test_longest_zone_suffix_wins() -> None:
    assert longest_suffix("a.dev.example.com", ZONES) == "dev.example.com"
    assert longest_suffix("a.example.com", ZONES) == "example.com"
    assert longest_suffix("*.example.org", ZONES) == "example.org"
    assert longest_suffix("example.net", ZONES) is None
    assert longest_suffix("badexample.com", ZONES) is None
