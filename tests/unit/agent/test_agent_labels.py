"""The label parser: DockFlare compatibility, Flareport's stricter checks, and that no input makes it raise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flareport_agent.labels import parse_container
from flareport_common.messages.rules import AccessSpec, ContainerInfo, OriginOptions, Rule


def parse(labels: dict[str, str], prefix: str | None = None) -> ContainerInfo:
    info = parse_container(labels, container_id="c1", name="web", label_prefix=prefix)
    assert info is not None, "the container should be enabled"
    return info


def errors(info: ContainerInfo) -> dict[str, str]:
    return {e.label: e.reason for e in info.errors}


def test_dockflare_labels_parse_into_a_rule_with_origin_options() -> None:
    info = parse(
        {
            "dockflare.enable": "Yes",
            "dockflare.hostname": "App.Example.com",
            "dockflare.service": "HTTPS://web:8443",
            "dockflare.path": "/api",
            "dockflare.zonename": "example.com",
            "dockflare.no_tls_verify": "t",
            "dockflare.originsrvname": "web.internal",
            "dockflare.httpHostHeader": "app.example.com",
            "dockflare.http2_origin": "1",
            "dockflare.disable_chunked_encoding": "false",
            "dockflare.match_sni_to_host": "no",
        }
    )
    assert info.rules == (
        Rule(
            hostname="app.example.com",
            service="https://web:8443",
            path="/api",
            zone_name="example.com",
            origin=OriginOptions(
                no_tls_verify=True,
                origin_server_name="web.internal",
                http_host_header="app.example.com",
                http2_origin=True,
                disable_chunked_encoding=False,
                match_sni_to_host=False,
            ),
        ),
    )
    assert info.errors == ()


@pytest.mark.parametrize("prefix", ["cloudflare.tunnel.", "dockflare.", "flareport."])
def test_every_builtin_prefix_is_accepted(prefix: str) -> None:
    info = parse({f"{prefix}enable": "true", f"{prefix}hostname": "a.example.com", f"{prefix}service": "hello_world"})
    assert [r.service for r in info.rules] == ["hello_world"]


def test_first_prefix_wins_per_label_and_the_custom_prefix_comes_first() -> None:
    labels = {
        "dockflare.enable": "true",
        "dockflare.hostname": "old.example.com",
        "flareport.hostname": "new.example.com",
        "cloudflare.tunnel.service": "http://legacy:80",
        "dockflare.service": "http://dock:80",
        "my.service": "http://mine:80",
    }
    assert parse(labels).rules[0].hostname == "new.example.com"
    assert parse(labels).rules[0].service == "http://dock:80"
    assert parse(labels, prefix="my").rules[0].service == "http://mine:80"


def test_not_enabled_containers_are_not_reported() -> None:
    assert parse_container({"dockflare.hostname": "a.example.com"}, container_id="c", name="n") is None
    assert parse_container({"dockflare.enable": "false"}, container_id="c", name="n") is None


def test_a_typo_in_enable_is_reported_not_ignored() -> None:
    info = parse({"dockflare.enable": "ture", "dockflare.hostname": "a.example.com", "dockflare.service": "bastion"})
    assert info.rules == ()
    assert "expected true/false" in errors(info)["dockflare.enable"]


def test_indexed_labels_fall_back_to_base_labels_and_stop_at_the_first_gap() -> None:
    info = parse(
        {
            "dockflare.enable": "true",
            "dockflare.service": "http://web:80",
            "dockflare.access.policy": "authenticate",
            "dockflare.0.hostname": "a.example.com",
            "dockflare.1.hostname": "b.example.com",
            "dockflare.1.service": "ssh://box:22",
            "dockflare.1.access.policy": "bypass",
            "dockflare.3.hostname": "unreached.example.com",
        }
    )
    assert [(r.hostname, r.service, r.access) for r in info.rules] == [
        ("a.example.com", "http://web:80", AccessSpec(policy="authenticate")),
        ("b.example.com", "ssh://box:22", AccessSpec(policy="bypass")),
    ]


def test_a_path_in_an_indexed_hostname_is_an_error_and_other_rules_survive() -> None:
    info = parse(
        {
            "dockflare.enable": "true",
            "dockflare.service": "http://web:80",
            "dockflare.0.hostname": "a.example.com/admin",
            "dockflare.1.hostname": "b.example.com",
        }
    )
    assert [r.hostname for r in info.rules] == ["b.example.com"]
    assert "contains a path ('/admin'); put it in the path label" in errors(info)["dockflare.0.hostname"]


@pytest.mark.parametrize(
    ("hostname", "reason"),
    [
        ("localhost", "at least two labels"),
        ("-bad.example.com", "label '-bad' is invalid"),
        ("a..example.com", "label '' is invalid"),
        ("*.*.example.com", "'*' only as the whole first label"),
        ("exämple.com", "must be ASCII"),
        ("https://a.example.com", "not a URL"),
        ("x" * 64 + ".example.com", "is invalid"),
        ("10.0.0.1", "all-numeric top-level label"),
    ],
)
def test_invalid_hostnames_name_the_label_and_reason(hostname: str, reason: str) -> None:
    info = parse({"flareport.enable": "1", "flareport.hostname": hostname, "flareport.service": "http://w:1"})
    assert info.rules == ()
    assert reason in errors(info)["flareport.hostname"]


def test_wildcard_hostnames_are_accepted() -> None:
    info = parse({"flareport.enable": "1", "flareport.hostname": "*.example.com", "flareport.service": "http://w:1"})
    assert info.rules[0].hostname == "*.example.com"


def test_missing_service_hostname_outside_zone_and_duplicates_are_errors() -> None:
    info = parse(
        {
            "flareport.enable": "true",
            "flareport.hostname": "a.example.com",
            "flareport.0.hostname": "b.example.com",
            "flareport.0.service": "http://w:1",
            "flareport.0.zonename": "other.org",
            "flareport.1.hostname": "c.example.com",
            "flareport.1.service": "http://w:1",
            "flareport.2.hostname": "c.example.com",
            "flareport.2.service": "http://w:2",
        }
    )
    found = errors(info)
    assert found["flareport.service"].startswith("required")
    assert "not in zone 'other.org'" in found["flareport.0.zonename"]
    assert "duplicate of flareport.1.hostname" in found["flareport.2.hostname"]
    assert [r.hostname for r in info.rules] == ["c.example.com"]


def test_access_labels() -> None:
    info = parse(
        {
            "flareport.enable": "true",
            "flareport.hostname": "a.example.com",
            "flareport.service": "http://w:1",
            "flareport.access.group": "ignored",
            "flareport.access.groups": "admins, devs,",
            "flareport.access.name": "Admin app",
            "flareport.access.session_duration": "1h30m",
            "flareport.access.app_launcher_visible": "true",
            "flareport.access.allowed_idps": "idp-1,idp-2",
            "flareport.access.auto_redirect_to_identity": "0",
            "flareport.access.custom_rules": '[{"decision": "allow", "include": [{"email": {"email": "a@x.com"}}]}]',
        }
    )
    assert info.rules[0].access == AccessSpec(
        groups=("admins", "devs"),
        name="Admin app",
        session_duration="1h30m",
        app_launcher_visible=True,
        allowed_idps=("idp-1", "idp-2"),
        auto_redirect_to_identity=False,
        custom_rules=({"decision": "allow", "include": [{"email": {"email": "a@x.com"}}]},),
    )


def test_legacy_group_bypass_means_the_bypass_policy() -> None:
    info = parse(
        {
            "dockflare.enable": "true",
            "dockflare.hostname": "a.example.com",
            "dockflare.service": "http://w:1",
            "dockflare.access.group": "bypass",
        }
    )
    assert info.rules[0].access == AccessSpec(groups=("bypass",)), "read as public-default-bypass when resolved"


@pytest.mark.parametrize(
    ("label", "value", "reason"),
    [
        ("access.policy", "allow", "expected bypass, authenticate, default_tld or custom"),
        ("access.session_duration", "a day", "expected a duration"),
        ("access.custom_rules", "{not json", "is not valid JSON"),
        ("access.custom_rules", "[1, 2]", "must be a JSON list of Access policies"),
        ("access.custom_rules", '[{"email": {"email": "a@x.com"}}]', "a custom rule is a whole Access policy"),
        ("no_tls_verify", "maybe", "expected true/false"),
        ("path", "a b", "must contain no spaces"),
    ],
)
def test_invalid_option_labels(label: str, value: str, reason: str) -> None:
    info = parse(
        {
            "flareport.enable": "true",
            "flareport.hostname": "a.example.com",
            "flareport.service": "http://w:1",
            f"flareport.{label}": value,
        }
    )
    assert info.rules == ()
    assert reason in errors(info)[f"flareport.{label}"]


def test_grace_period_label() -> None:
    base = {"flareport.enable": "true", "flareport.hostname": "a.example.com", "flareport.service": "http://w:1"}
    assert parse({**base, "flareport.grace_period": "120"}).grace_period_seconds == 120
    bad = parse({**base, "flareport.grace_period": "2h"})
    assert bad.grace_period_seconds is None and len(bad.rules) == 1
    assert "whole number of seconds" in errors(bad)["flareport.grace_period"]


_keys = st.sampled_from(
    [
        "enable", "hostname", "service", "path", "zonename", "no_tls_verify", "originsrvname", "httpHostHeader",
        "http2_origin", "access.policy", "access.group", "access.groups", "access.custom_rules", "grace_period",
        "access.session_duration", "0.hostname", "0.service", "1.hostname", "0.path", "0.access.custom_rules",
    ]
)  # fmt: skip
_prefixes = st.sampled_from(["flareport.", "dockflare.", "cloudflare.tunnel.", "custom.", ""])
_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["true", "http://a:1", "tcp://[::1]:22", "a.example.com", "[{}]", "[" * 2000, "9" * 5000]),
    st.from_regex(r"(https?|tcp|unix|unix\+tls|http_status)://?[\[\]\w.:/-]{0,20}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.builds(lambda p, k: p + k, _prefixes, _keys) | st.text(max_size=20), _values, max_size=12))
def test_no_label_set_makes_the_parser_raise(labels: dict[str, str]) -> None:
    labels.setdefault("flareport.enable", "true")
    info = parse_container(labels, container_id="c", name="n", label_prefix="custom")
    if info is not None:
        for error in info.errors:
            missing = error.reason.startswith("required")
            assert error.label in labels or missing, "every error names a label the user wrote (or must write)"
            assert error.reason
