"""The API's own validators and error plumbing: hostnames, service URLs, rules, field names, the auth brake."""

from __future__ import annotations

import msgspec
import pytest

from flareport_api import validation
from flareport_api.auth import FailureLimiter
from flareport_api.errors import ApiError, field_of
from flareport_api.keyproof import KeyMinter
from flareport_api.keystore import hash_key
from flareport_api.schemas import ManualRuleRequest, RuleInput
from flareport_common.protocol import EventBatch


@pytest.mark.parametrize("name", ["app.example.com", "*.example.com", "a-b.c.example.co.uk", "APP.Example.com."])
def test_valid_hostnames_are_normalised(name: str) -> None:
    assert validation.hostname(name, "h") == name.lower().rstrip(".")


@pytest.mark.parametrize(
    "name",
    ["localhost", "", "a..example.com", "-a.example.com", "a-.example.com", "a.*.example.com", "a b.example.com",
     "x" * 64 + ".example.com", "1.2.3.4", "app.example.com/path", "app_1.example.com"],
)  # fmt: skip
def test_invalid_hostnames_name_the_field(name: str) -> None:
    with pytest.raises(ApiError) as caught:
        validation.hostname(name, "rule.hostname")
    assert (caught.value.status, caught.value.field) == (422, "rule.hostname")


@pytest.mark.parametrize(
    "service",
    ["http://web:8080", "https://10.0.0.1", "https://[::1]:8443", "tcp://db:5432", "ssh://host:22", "rdp://pc:3389",
     "unix:/run/app.sock", "http_status:404", "hello_world", "bastion", "http://web/"],
)  # fmt: skip
def test_valid_services(service: str) -> None:
    assert validation.service_url(service, "s") == service


@pytest.mark.parametrize(
    "service",
    ["web:8080", "ftp://x", "tcp://db", "http://u:p@web", "http://web:0", "http://web:70000", "http://web/path",
     "http://web?x=1", "http_status:999", "unix:relative.sock", "http://", "http://bad_host!"],
)  # fmt: skip
def test_invalid_services(service: str) -> None:
    with pytest.raises(ApiError) as caught:
        validation.service_url(service, "rule.service")
    assert caught.value.field == "rule.service"


def test_rule_checks_zone_membership_and_access_durations() -> None:
    ok = RuleInput(hostname="A.example.com", service="http://a", zone_name="example.com").to_rule()
    assert validation.rule(ok).hostname == "a.example.com"
    outside = RuleInput(hostname="a.example.org", service="http://a", zone_name="example.com").to_rule()
    with pytest.raises(ApiError, match="not inside zone"):
        validation.rule(outside)
    raw = b'{"rule": {"hostname": "a.example.com", "service": "http://a", "access": {"session_duration": "1 day"}}}'
    with pytest.raises(ApiError) as caught:
        validation.rule(msgspec.json.decode(raw, type=ManualRuleRequest).rule.to_rule())
    assert caught.value.field == "rule.access.session_duration"


def test_msgspec_errors_become_dotted_field_names() -> None:
    cases = {
        b'{"events": [{"type": "inventory", "agent_id": "a", "seq": "x"}]}': "events[0].seq",
        b'{"events": [], "unknown": 1}': "unknown",
        b"{}": "events",
    }
    for raw, field in cases.items():
        with pytest.raises(msgspec.ValidationError) as caught:
            msgspec.json.decode(raw, type=EventBatch)
        assert field_of(caught.value) == field


def test_failure_limiter_blocks_after_the_limit_until_the_window_passes() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, 60.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None, "another client is not affected"
    now[0] += 30
    assert limiter.retry_after("10.0.0.1") == 30
    now[0] += 31
    assert limiter.retry_after("10.0.0.1") is None


def test_keys_are_random_and_stored_only_as_their_digest() -> None:
    minter = KeyMinter("secret" * 8)
    (first, first_id), (second, second_id) = minter.mint(), minter.mint()
    assert first_id != second_id
    assert first != second and len(first) >= 43
    assert hash_key(first) != hash_key(second) and first not in hash_key(first)
    assert len(hash_key(first)) == 64
