"""Access app bodies from the resolved app, the comparison that avoids writes, and the longest zone suffix."""

from __future__ import annotations

from typing import Any

import pytest

from flareport_common.messages.cfjobs import AccessPolicyDef, DesiredAccessApp, ReusablePolicyRef
from flareport_dns_worker.access_plan import (
    app_body,
    app_domain,
    app_matches,
    app_problem,
    is_ours,
    policy_matches,
    reusable_policy_body,
)
from flareport_dns_worker.zones import longest_suffix

ZONES = {"example.com": "z1", "dev.example.com": "z2", "example.org": "z3"}
BYPASS = AccessPolicyDef(name="public-default-bypass", decision="bypass", include=({"everyone": {}},))
OPS = AccessPolicyDef(name="ops", decision="allow", include=({"email": {"email": "o@example.com"}},))


def test_inline_policies_are_app_scoped_in_order_and_every_setting_is_sent() -> None:
    app = DesiredAccessApp(hostname="App.example.com", inline=(BYPASS, OPS))
    body = app_body(app, "flareport")
    assert body["domain"] == "app.example.com" and body["type"] == "self_hosted" and body["tags"] == ["flareport"]
    assert body["policies"] == [
        {"name": "public-default-bypass", "decision": "bypass", "include": [{"everyone": {}}], "precedence": 1},
        {"name": "ops", "decision": "allow", "include": [{"email": {"email": "o@example.com"}}], "precedence": 2},
    ]
    # Always sent, so Cloudflare's own defaults (launcher visible) never decide; no IdPs -> the field is left out.
    assert body["app_launcher_visible"] is False and body["auto_redirect_to_identity"] is False
    assert body["session_duration"] == "24h" and body["name"] == "app.example.com" and "allowed_idps" not in body


def test_reusable_policies_are_linked_in_order_and_path_is_part_of_domain() -> None:
    app = DesiredAccessApp(
        hostname="a.example.com",
        path="/admin/",
        name="Admin",
        session_duration="8h",
        app_launcher_visible=True,
        allowed_idps=("idp1",),
        auto_redirect_to_identity=True,
        reusable=(ReusablePolicyRef(group_id="ops", policy=OPS), ReusablePolicyRef(group_id="dev", policy=BYPASS)),
    )
    body = app_body(app, "flareport", ["p-ops", "p-dev"])
    assert body["domain"] == "a.example.com/admin", "a trailing / is not part of the domain"
    assert body["policies"] == [{"id": "p-ops", "precedence": 1}, {"id": "p-dev", "precedence": 2}]
    assert (body["name"], body["session_duration"], body["allowed_idps"]) == ("Admin", "8h", ["idp1"])
    assert body["app_launcher_visible"] is True and body["auto_redirect_to_identity"] is True
    assert reusable_policy_body(app.reusable[0]) == {
        "name": "flareport group ops",
        "decision": "allow",
        "include": [{"email": {"email": "o@example.com"}}],
    }


@pytest.mark.parametrize(
    ("path", "domain"),
    [(None, "a.example.com"), ("/", "a.example.com/"), ("/api//", "a.example.com/api"), ("api", "a.example.com/api")],
)
def test_domain_is_host_plus_the_path_without_its_trailing_slash(path: str | None, domain: str) -> None:
    assert app_domain("A.example.com", path) == domain


def test_an_app_with_both_kinds_or_no_policy_or_a_regex_path_is_refused() -> None:
    ref = ReusablePolicyRef(group_id="ops", policy=OPS)
    assert "both reusable" in (
        app_problem(DesiredAccessApp(hostname="a.example.com", reusable=(ref,), inline=(OPS,))) or ""
    )
    assert "no policy" in (app_problem(DesiredAccessApp(hostname="a.example.com")) or "")
    for path in ("^/api/.*", "/a b", "/(x|y)", "/api?"):
        assert "regular expression" in (
            app_problem(DesiredAccessApp(hostname="a.example.com", path=path, inline=(OPS,))) or ""
        )
    assert app_problem(DesiredAccessApp(hostname="a.example.com", path="/api/*/v1", inline=(OPS,))) is None


def _as_returned(wanted: dict[str, Any], policies: list[dict[str, Any]]) -> dict[str, Any]:
    """An app as Cloudflare returns it: every field, and its policies expanded (no ``reusable`` field relied on)."""
    return {
        **{k: v for k, v in wanted.items() if k != "policies"},
        "id": "app1",
        "aud": "x",
        "allowed_idps": wanted.get("allowed_idps", []),
        "self_hosted_domains": [wanted["domain"]],
        "policies": policies,
    }


def test_an_inline_app_as_cloudflare_returns_it_matches_the_wanted_body() -> None:
    wanted = app_body(DesiredAccessApp(hostname="a.example.com", inline=(BYPASS,)), "flareport")
    policy = {**wanted["policies"][0], "id": "p1", "exclude": [], "require": [], "session_duration": "24h"}
    returned = _as_returned(wanted, [policy])
    assert app_matches(returned, wanted)
    assert not app_matches({**returned, "session_duration": "1h"}, wanted)
    assert not app_matches({**returned, "allowed_idps": ["idp"]}, wanted), "an IdP set by hand is taken off"
    assert not app_matches(_as_returned(wanted, [{**policy, "decision": "allow"}]), wanted)
    assert is_ours(returned, "flareport") and not is_ours({"tags": []}, "flareport")


def test_a_reusable_app_matches_by_policy_id_and_precedence_only() -> None:
    app = DesiredAccessApp(hostname="a.example.com", reusable=(ReusablePolicyRef(group_id="ops", policy=OPS),))
    wanted = app_body(app, "flareport", ["p-ops"])
    # Cloudflare embeds the reusable policy's content; only its id and precedence are compared (the content is the
    # reusable policy's own business), and no undocumented field such as "reusable" is needed.
    linked = {**reusable_policy_body(app.reusable[0]), "id": "p-ops", "precedence": 1, "created_at": "t"}
    assert app_matches(_as_returned(wanted, [linked]), wanted)
    assert not app_matches(_as_returned(wanted, [{**linked, "id": "p-other"}]), wanted)
    assert not app_matches(_as_returned(wanted, [{**linked, "precedence": 2}]), wanted)
    assert not app_matches(_as_returned(wanted, [linked, {**linked, "id": "p2", "precedence": 2}]), wanted)
    # An app with inline policies of the same content is not the linked app.
    inline = {**linked, "id": "inline-1"}
    assert not app_matches(_as_returned(wanted, [inline]), wanted)


def test_a_reusable_policy_matches_on_its_content() -> None:
    body = reusable_policy_body(ReusablePolicyRef(group_id="ops", policy=OPS))
    current = {**body, "id": "p", "exclude": [], "require": [], "session_duration": "24h", "reusable": True}
    assert policy_matches(current, body)
    assert not policy_matches({**current, "exclude": [{"ip": {"ip": "192.0.2.1/32"}}]}, body), "an edit is undone"


def test_longest_zone_suffix_wins() -> None:
    assert longest_suffix("a.dev.example.com", ZONES) == "dev.example.com"
    assert longest_suffix("a.example.com", ZONES) == "example.com"
    assert longest_suffix("*.example.org", ZONES) == "example.org"
    assert longest_suffix("example.net", ZONES) is None
    assert longest_suffix("badexample.com", ZONES) is None
