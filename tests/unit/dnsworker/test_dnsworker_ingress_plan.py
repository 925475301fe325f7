"""The ingress plan: our rules, foreign rules preserved in order, one catch-all, no PUT when unchanged."""

from __future__ import annotations

from typing import Any

from flareport_common.messages.cfjobs import IngressEntry
from flareport_common.messages.rules import OriginOptions
from flareport_dns_worker.ingress_plan import CATCH_ALL, plan_ingress

DASHBOARD = {"hostname": "dash.example.com", "service": "http://10.0.0.9:80"}
LEGACY = {"hostname": "legacy.example.com", "path": "/old", "service": "http://10.0.0.8:80"}


def entry(host: str, service: str = "http://web:80", **kw: Any) -> IngressEntry:
    return IngressEntry(hostname=host, service=service, **kw)


def test_first_sync_writes_our_rules_and_a_single_catch_all() -> None:
    plan = plan_ingress(None, [entry("a.example.com"), entry("b.example.com", path="/api")], set())
    assert plan.changed
    assert plan.config["ingress"] == [
        {"hostname": "a.example.com", "service": "http://web:80"},
        {"hostname": "b.example.com", "service": "http://web:80", "path": "/api"},
        CATCH_ALL,
    ]
    assert plan.owned == {"a.example.com", "b.example.com/api"}


def test_origin_options_map_to_cloudflared_keys() -> None:
    origin = OriginOptions(
        no_tls_verify=True,
        origin_server_name="origin.internal",
        http_host_header="app.internal",
        http2_origin=True,
        disable_chunked_encoding=False,
        match_sni_to_host=True,
    )
    plan = plan_ingress(None, [entry("a.example.com", "https://web:443", origin=origin)], set())
    assert plan.config["ingress"][0]["originRequest"] == {
        "noTLSVerify": True,
        "originServerName": "origin.internal",
        "httpHostHeader": "app.internal",
        "http2Origin": True,
        "disableChunkedEncoding": False,
        "matchSNItoHost": True,
    }


def test_foreign_rules_are_preserved_in_order_before_the_catch_all() -> None:
    current = {
        "ingress": [
            DASHBOARD,
            {"hostname": "a.example.com", "service": "http://old:80"},
            LEGACY,
            {"service": "http_status:503"},
        ],
        "warp-routing": {"enabled": True},
    }
    plan = plan_ingress(current, [entry("a.example.com")], {"a.example.com"})
    assert plan.config["ingress"] == [
        {"hostname": "a.example.com", "service": "http://web:80"},
        DASHBOARD,
        LEGACY,
        CATCH_ALL,
    ], "foreign rules must survive in their order, and exactly one http_status:404 catch-all comes last"
    assert plan.config["warp-routing"] == {"enabled": True}
    assert plan.foreign == 2


def test_unchanged_configuration_needs_no_put() -> None:
    first = plan_ingress({"ingress": [DASHBOARD, CATCH_ALL]}, [entry("a.example.com")], set())
    again = plan_ingress(first.config, [entry("a.example.com")], first.owned)
    assert not again.changed


def test_cloudflare_echoing_empty_fields_does_not_count_as_change() -> None:
    echoed = {
        "ingress": [
            {"hostname": "a.example.com", "service": "http://web:80", "path": "", "originRequest": {}},
            {"service": "http_status:404", "originRequest": {}},
        ]
    }
    assert not plan_ingress(echoed, [entry("a.example.com")], {"a.example.com"}).changed


def test_rules_we_no_longer_want_are_removed_but_foreign_ones_stay() -> None:
    current = {"ingress": [{"hostname": "a.example.com", "service": "http://web:80"}, DASHBOARD, CATCH_ALL]}
    plan = plan_ingress(current, [], {"a.example.com"})
    assert plan.config["ingress"] == [DASHBOARD, CATCH_ALL]
    assert plan.changed and plan.owned == set()


def test_foreign_rule_on_a_wanted_key_is_a_conflict_and_kept() -> None:
    current = {"ingress": [DASHBOARD, CATCH_ALL]}
    plan = plan_ingress(current, [entry("dash.example.com"), entry("b.example.com")], set())
    assert [(c.kind, c.hostname) for c in plan.conflicts] == [("conflict", "dash.example.com")]
    assert plan.config["ingress"] == [{"hostname": "b.example.com", "service": "http://web:80"}, DASHBOARD, CATCH_ALL]
    assert plan.owned == {"b.example.com"}


def test_lost_ownership_claims_only_wanted_rules() -> None:
    current = {"ingress": [{"hostname": "a.example.com", "service": "http://old:80"}, DASHBOARD, CATCH_ALL]}
    plan = plan_ingress(current, [entry("a.example.com")], None)
    assert plan.config["ingress"] == [{"hostname": "a.example.com", "service": "http://web:80"}, DASHBOARD, CATCH_ALL]
    assert not plan.conflicts


def test_without_prune_rules_we_no_longer_want_are_kept_after_ours_and_stay_owned() -> None:
    old = {"hostname": "old.example.com", "service": "http://old:80"}
    current = {
        "ingress": [
            {"hostname": "a.example.com", "service": "http://web:80"},
            old,
            DASHBOARD,
            {"hostname": "b.example.com", "path": "/api", "service": "http://api:80"},
            CATCH_ALL,
        ]
    }
    owned = {"a.example.com", "old.example.com", "b.example.com/api"}
    plan = plan_ingress(current, [entry("new.example.com"), entry("a.example.com")], owned, prune=False)
    assert plan.config["ingress"] == [
        {"hostname": "new.example.com", "service": "http://web:80"},
        {"hostname": "a.example.com", "service": "http://web:80"},
        old,
        DASHBOARD,
        {"hostname": "b.example.com", "path": "/api", "service": "http://api:80"},
        CATCH_ALL,
    ], "kept rules of ours must stay as they are, in their order among the foreign ones, before the catch-all"
    assert plan.owned == {"new.example.com", "a.example.com", "old.example.com", "b.example.com/api"}
    assert (plan.kept, plan.foreign) == (2, 1)

    # Applied and planned again without prune: nothing to write. Then with prune: our leftovers go, foreign stays.
    assert not plan_ingress(
        plan.config, [entry("new.example.com"), entry("a.example.com")], plan.owned, prune=False
    ).changed
    pruned = plan_ingress(plan.config, [entry("new.example.com"), entry("a.example.com")], plan.owned)
    assert pruned.changed
    assert pruned.config["ingress"] == [
        {"hostname": "new.example.com", "service": "http://web:80"},
        {"hostname": "a.example.com", "service": "http://web:80"},
        DASHBOARD,
        CATCH_ALL,
    ]
    assert pruned.owned == {"new.example.com", "a.example.com"}


def test_without_prune_a_foreign_rule_on_a_wanted_key_is_still_a_conflict() -> None:
    plan = plan_ingress({"ingress": [DASHBOARD, CATCH_ALL]}, [entry("dash.example.com")], set(), prune=False)
    assert [(c.kind, c.hostname) for c in plan.conflicts] == [("conflict", "dash.example.com")]
    assert plan.config["ingress"] == [DASHBOARD, CATCH_ALL] and not plan.changed


def test_a_rule_exactly_as_we_would_write_it_is_adopted_but_a_different_one_is_a_conflict() -> None:
    # Our PUT went through, then Redis lost the last second of writes, our record of that rule with it.
    ours_unrecorded = {"hostname": "app.example.com", "service": "http://web:80"}
    current = {"ingress": [DASHBOARD, ours_unrecorded, CATCH_ALL]}
    plan = plan_ingress(current, [entry("app.example.com"), entry("dash.example.com")], {"old.example.com"})
    assert [(c.kind, c.hostname) for c in plan.conflicts] == [("conflict", "dash.example.com")]
    assert plan.owned == {"app.example.com"}
    assert plan.config["ingress"] == [ours_unrecorded, DASHBOARD, CATCH_ALL]
    with_origin = entry("app.example.com", origin=OriginOptions(no_tls_verify=True))
    differs = plan_ingress(current, [with_origin], set())
    assert [c.hostname for c in differs.conflicts] == ["app.example.com"], "other origin options: not ours"


def test_a_protected_path_in_dockflares_unanchored_form_is_replaced_by_the_anchored_rule() -> None:
    protected = entry("router.example.com", path="/admin", protected=True)
    dockflare = {"hostname": "router.example.com", "path": "/admin", "service": "http://web:80"}
    elsewhere = {"hostname": "router.example.com", "path": "/admin", "service": "http://other:80"}

    plan = plan_ingress({"ingress": [dockflare, CATCH_ALL]}, [protected], set())
    assert plan.config["ingress"] == [
        {"hostname": "router.example.com", "service": "http://web:80", "path": "^/admin(/.*)?$"},
        CATCH_ALL,
    ], "the unanchored copy would route /x/admin around the Access app"
    assert not plan.conflicts

    kept = plan_ingress({"ingress": [elsewhere, CATCH_ALL]}, [protected], set())
    assert elsewhere in kept.config["ingress"], "a rule to another service is not ours in any form"
    assert kept.foreign == 1
