"""``flareport rules override HOSTNAME[/PATH] ...`` and ``flareport rules revert`` against a real API process."""

from __future__ import annotations

from flareport_common.messages.intents import RuleOverrideCleared, RuleOverrideSet
from flareport_common.messages.rules import AccessSpec, OriginOptions, RuleOverride
from flareport_common.readmodel import RuleRecord
from fptest.cli_helpers import ApiProcess, ReadModel, run_cli


def test_override_and_revert_a_container_rule(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_rule(
        RuleRecord(key="app.example.com/api", hostname="app.example.com", path="/api", service="http://app:80",
                   agent_id="agt-1", status="active", overridden=("service", "access"))
    )  # fmt: skip
    shown = run_cli("rules", "show", "app.example.com")
    assert "override:  service, access" in shown.out, "what the admin's override set instead of the labels"
    refused = run_cli("rules", "override", "app.example.com/api", "--service", "ftp://nope")
    assert refused.code != 0 and "service" in refused.err
    nothing = run_cli("rules", "override", "app.example.com/api")
    assert nothing.code != 0 and "at least one of service, origin, access" in nothing.err

    done = run_cli(
        "rules", "override", "app.example.com/api", "--service", "https://app:8443", "--no-tls-verify", "on",
        "--http2-origin", "off", "--access-policy", "authenticate", "--access-groups", "staff,ops", "--json",
    )  # fmt: skip
    assert done.code == 0, done.err
    reverted = run_cli("rules", "revert", "app.example.com/api")
    assert reverted.code == 0 and "back to its labels" in reverted.out
    set_, cleared = readmodel.intents()
    assert isinstance(set_, RuleOverrideSet) and set_.id == done.json()["intent_id"]
    assert (set_.hostname, set_.path, set_.override) == (
        "app.example.com",
        "/api",
        RuleOverride(
            service="https://app:8443",
            origin=OriginOptions(no_tls_verify=True, http2_origin=False),
            access=AccessSpec(policy="authenticate", groups=("staff", "ops")),
        ),
    )
    assert isinstance(cleared, RuleOverrideCleared) and cleared.path == "/api"
    again = run_cli("rules", "revert", "app.example.com/api")
    assert again.code != 0 and "unknown rule override" in again.err
