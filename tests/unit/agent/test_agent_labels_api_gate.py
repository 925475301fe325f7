"""The agent never sends what the API refuses: a label value the API's checks would refuse becomes a label error
naming the label, and a container stays within the control plane's default size quotas."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flareport_agent.labels import MAX_ERROR_BYTES, MAX_ERRORS, MAX_RULES, parse_container
from flareport_api import agent_input
from flareport_common.messages.events import ContainerStart
from flareport_common.messages.rules import ContainerInfo
from flareport_common.settings import AgentQuotas
from flareport_common.validate import TRUNCATED

BASE = {"flareport.enable": "true", "flareport.hostname": "app.example.com", "flareport.service": "http://web:80"}


def parse(labels: dict[str, str]) -> ContainerInfo:
    info = parse_container(labels, container_id="c1", name="web")
    assert info is not None
    return info


def accepted_by_the_api(info: ContainerInfo) -> None:
    agent_input.checked((ContainerStart(agent_id="a", seq=1, container=info),), AgentQuotas())


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("flareport.originsrvname", "not a host"),
        ("flareport.httpHostHeader", "x" * 300),
        ("flareport.access.name", "x" * 201),
        ("flareport.access.groups", "admins, no spaces allowed"),
        ("flareport.access.allowed_idps", "x" * 65),
        ("flareport.access.custom_rules", '[{"claimed_at": 0}]'),
        ("flareport.access.custom_rules", '[{"decision": "allow", "include": [{"email": "not an object"}]}]'),
        ("flareport.access.custom_rules", '[{"decision": "allow", "include": [{"saml": {"a": [[[{}]]]}}]}]'),
    ],
)
def test_a_value_the_api_refuses_is_a_label_error_naming_the_label(label: str, value: str) -> None:
    info = parse({**BASE, label: value})
    assert info.rules == ()
    assert [e.label for e in info.errors] == [label]
    accepted_by_the_api(info)


def test_container_names_with_underscores_are_origins_both_sides_accept() -> None:
    info = parse({**BASE, "flareport.service": "http://my_app_1:8080"})
    assert [r.service for r in info.rules] == ["http://my_app_1:8080"]
    accepted_by_the_api(info)


def test_rules_beyond_the_quota_are_label_errors_not_a_refused_batch() -> None:
    labels = dict(BASE)
    for n in range(MAX_RULES + 5):
        labels[f"flareport.{n}.hostname"] = f"h{n}.example.com"
    info = parse(labels)
    assert len(info.rules) == MAX_RULES
    # The base rule and indexed rules 0-99 make 101: the last one is reported, not sent.
    assert [(e.label, e.reason) for e in info.errors] == [
        (f"flareport.{MAX_RULES - 1}.hostname", f"more than {MAX_RULES} rules in one container")
    ]
    accepted_by_the_api(info)


def test_label_errors_are_bounded_in_number_and_size() -> None:
    labels = {**BASE, "flareport.path": "x" * 5000}  # its error quotes the value
    labels.update({f"flareport.{n}.hostname": f"bad_{n}.example.com" for n in range(MAX_RULES)})
    info = parse(labels)
    assert len(info.errors) == MAX_ERRORS
    assert info.errors[-1].reason.startswith("and ") and info.errors[-1].reason.endswith("more label errors")
    assert all(len(e.label.encode()) + len(e.reason.encode()) <= MAX_ERROR_BYTES for e in info.errors)
    assert any(e.reason.endswith(TRUNCATED) for e in info.errors)
    accepted_by_the_api(info)


_keys = st.sampled_from(
    ["hostname", "service", "path", "zonename", "originsrvname", "httpHostHeader", "access.name", "access.groups",
     "access.allowed_idps", "access.custom_rules", "access.session_duration", "0.hostname", "0.service",
     "0.zonename", "grace_period"]
)  # fmt: skip
_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["a.example.com", "example.com", "*.example.com", "http://a_b:1", "unix:/x", "24h",
                     '[{"email": {"email": "a@b"}}]', '[{"everyone": {}}]', "g1,g2", "/p", "^/api"]),
    st.from_regex(r"[a-z0-9.*_-]{1,20}\.(com|test)", fullmatch=True),
    st.from_regex(r"(https?|tcp|ssh|unix|http_status)://?[\[\]\w.:/-]{0,20}", fullmatch=True),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_keys.map(lambda k: "flareport." + k), _values, max_size=10))
def test_whatever_the_labels_the_api_accepts_what_the_agent_reports(labels: dict[str, str]) -> None:
    labels["flareport.enable"] = "true"
    info = parse(labels)
    accepted_by_the_api(info)
