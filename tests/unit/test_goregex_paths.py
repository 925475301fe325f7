"""A rule's path is checked in Go's regex dialect (RE2) before it reaches Cloudflare: the API and the agent refuse
it as a per-rule field error, and the dns-worker leaves it out of the tunnel configuration with a per-rule error."""

from __future__ import annotations

import re

import pytest

from flareport_agent.labels import parse_container
from flareport_common import validate
from flareport_common.goregex import go_regex_error
from flareport_common.messages.cfjobs import IngressEntry
from flareport_common.messages.rules import Rule
from flareport_dns_worker.ingress_plan import CATCH_ALL, plan_ingress

REFUSED = ["^/a(?=b)", "^/(a)\\1", "^/a(?!b)", "(?<=x)/y", "^/a++", "^/api\\Z", "^/\\C", "^/x{1001}"]
ACCEPTED = ["^/\\pL+$", "^/api\\z", "^/(?<v>v[0-9]+)/", "^/(?P<v>v[0-9]+)/", "/static/", "^/api/.*$", "^/\\\\C"]


@pytest.mark.parametrize("pattern", REFUSED)
def test_python_accepts_what_go_refuses(pattern: str) -> None:
    if pattern != "^/\\C" and "{1001}" not in pattern:
        re.compile(pattern)  # the old check's judge let these through
    assert go_regex_error(pattern)


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_go_accepts(pattern: str) -> None:
    assert go_regex_error(pattern) is None


@pytest.mark.parametrize("pattern", REFUSED)
def test_rule_validation_names_the_path(pattern: str) -> None:
    with pytest.raises(validate.FieldError) as caught:
        validate.rule(Rule(hostname="app.example.com", service="http://app:80", path=pattern))
    assert caught.value.field == "rule.path"
    assert repr(pattern) in caught.value.reason and "RE2" in caught.value.reason


def test_rule_validation_accepts_re2_only_syntax() -> None:
    for pattern in ACCEPTED:
        assert validate.rule(Rule(hostname="app.example.com", service="http://app:80", path=pattern)).path == pattern


def test_dns_worker_leaves_the_rule_out_with_a_per_rule_error() -> None:
    good = IngressEntry(hostname="a.example.com", service="http://a:80", path="^/api/")
    bad = IngressEntry(hostname="b.example.com", service="http://b:80", path="^/b(?=c)")
    plan = plan_ingress(None, [good, bad], None)
    assert plan.config["ingress"] == [
        {"hostname": "a.example.com", "service": "http://a:80", "path": "^/api/"},
        CATCH_ALL,
    ]
    [error] = plan.conflicts
    assert error.kind == "invalid" and error.hostname == "b.example.com" and error.path == "^/b(?=c)"
    assert "^/b(?=c)" in error.message and "RE2" in error.message


def test_an_agent_label_with_such_a_path_is_a_label_error_and_the_containers_other_rules_stand() -> None:
    labels = {
        "flareport.enable": "true",
        "flareport.0.hostname": "a.example.com",
        "flareport.0.service": "http://web:80",
        "flareport.0.path": "^/a(?=b)",
        "flareport.1.hostname": "b.example.com",
        "flareport.1.service": "http://web:80",
        "flareport.1.path": "^/\\pL+$",
    }
    info = parse_container(labels, container_id="c1", name="web")
    assert info is not None
    assert [(r.hostname, r.path) for r in info.rules] == [("b.example.com", "^/\\pL+$")]
    [error] = info.errors
    assert error.label == "flareport.0.path" and "'^/a(?=b)'" in error.reason and "RE2" in error.reason
