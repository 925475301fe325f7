"""``flareport agents enroll/policy/show`` and an agent's publishing policy, against a real API process."""

from __future__ import annotations

from flareport_cli.admin.agents import ORIGIN_KINDS as CLI_KINDS
from flareport_common.messages import AgentEnrolled, AgentPolicyChanged
from flareport_common.policy import ORIGIN_KINDS
from flareport_common.readmodel import AgentRecord
from fptest.cli_helpers import ApiProcess, ReadModel, run_cli


def _agent() -> AgentRecord:
    return AgentRecord(
        agent_id="agt-web",
        display_name="web host",
        status="active",
        tunnel_id="tun-1",
        allowed_zones=("example.com",),
        allow_apex=True,
        origin_allow=("unix",),
    )


def test_the_cli_knows_the_origin_kinds_the_api_accepts() -> None:
    assert tuple(ORIGIN_KINDS) == CLI_KINDS


def test_enroll_with_publishing_flags(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_agent())
    argv = ("agents", "enroll", "agt-web", "--allow-wildcard", "--origin-allow", "metadata", "--origin-allow", "unix")
    result = run_cli(*argv)
    assert result.code == 0, result.err
    [enrolled] = readmodel.intents()
    assert isinstance(enrolled, AgentEnrolled)
    assert (enrolled.allow_wildcard, enrolled.allow_apex, enrolled.origin_allow) == (True, False, ("metadata", "unix"))


def test_policy_changes_only_what_it_names(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_agent())
    result = run_cli(
        "agents", "policy", "agt-web", "--allow-wildcard", "--no-allow-apex", "--suffix", ".dev.example.org"
    )
    assert result.code == 0, result.err
    assert "Agent agt-web: policy change requested (intent " in result.out
    cleared = run_cli("agents", "policy", "agt-web", "--no-origin-allow", "--no-zones")
    assert cleared.code == 0, cleared.err
    first, second = readmodel.intents()
    assert isinstance(first, AgentPolicyChanged) and isinstance(second, AgentPolicyChanged)
    assert (
        first.allowed_zones,
        first.allowed_suffixes,
        first.allow_wildcard,
        first.allow_apex,
        first.origin_allow,
    ) == (
        ("example.com",),
        ("dev.example.org",),
        True,
        False,
        ("unix",),
    )
    assert (second.allowed_zones, second.origin_allow) == ((), ())


def test_policy_refuses_nothing_and_contradictions_before_calling_the_api(
    api: ApiProcess, readmodel: ReadModel
) -> None:
    readmodel.put_agent(_agent())
    empty = run_cli("agents", "policy", "agt-web")
    assert empty.code == 2 and "nothing to change" in empty.err
    both = run_cli("agents", "policy", "agt-web", "--zone", "example.com", "--no-zones")
    assert both.code == 2 and "not both" in both.err
    unknown = run_cli("agents", "policy", "agt-web", "--origin-allow", "docker")
    assert unknown.code == 2 and "invalid choice" in unknown.err
    bad_zone = run_cli("agents", "policy", "agt-web", "--zone", "not a zone!")
    assert bad_zone.code == 1 and "(field: allowed_zones[0])" in bad_zone.err
    assert readmodel.intents() == []


def test_show_tells_the_policy(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_agent())
    shown = run_cli("agents", "show", "agt-web")
    assert shown.code == 0, shown.err
    assert "wildcard names:   denied" in shown.out
    assert "zone apex:        allowed" in shown.out
    assert "origins allowed:  unix" in shown.out
