"""``flareport agents`` against a real API process, with agent records written as the reconciler writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flareport_common.messages.events import TunnelState
from flareport_common.messages.rules import RuleError
from flareport_common.readmodel import AgentRecord, ContainerLabelErrors
from fptest.cli_helpers import ApiProcess, ReadModel, register_agent, row, run_cli


def _active_agent(agent_id: str = "agt-web") -> AgentRecord:
    return AgentRecord(
        agent_id=agent_id,
        display_name="web host",
        status="active",
        hostname="web-01",
        version="1.2.3",
        registered_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        last_seen=datetime.now(UTC) - timedelta(minutes=3),
        tunnel_id="tun-1",
        tunnel_name="edge",
        tunnel=TunnelState(container_state="running", restarts=2),
        allowed_zones=("example.com",),
        label_errors=(
            ContainerLabelErrors(
                container_id="c" * 64,
                container_name="web-1",
                errors=(RuleError(label="flareport.service", reason="needs a port (host:port)"),),
            ),
        ),
    )


def test_ls_shows_read_model_agents_and_registered_pending_ones(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_active_agent())
    key = run_cli("keys", "create", "new-host", "--json").json()["key"]
    pending_id = register_agent(api.url, key, name="new host")

    listed = run_cli("agents", "ls")
    assert listed.code == 0, listed.err
    assert listed.lines()[0].split()[:4] == ["AGENT", "ID", "NAME", "STATUS"]
    assert row(listed, "agt-web") == ["agt-web", "web host", "active", "web-01", "edge (tun-1)", "3m ago", "1.2.3"]
    assert row(listed, pending_id)[1:3] == ["new host", "pending"]

    only_active = run_cli("agents", "ls", "--status", "active", "--json").json()
    assert [a["agent_id"] for a in only_active["agents"]] == ["agt-web"]
    # The API writes every field, defaults included, and the CLI passes it through untouched.
    assert only_active["agents"][0]["docker_reachable"] is True


def test_show_gives_the_record_keys_and_command_history(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_active_agent())
    shown = run_cli("agents", "show", "agt-web")
    assert shown.code == 0, shown.err
    assert "name:             web host" in shown.out
    assert "tunnel:           edge (tun-1)" in shown.out
    assert "cloudflared:      running, 2 restarts" in shown.out
    assert "allowed zones:    example.com" in shown.out
    assert "registered:       2026-01-02 03:04:05" in shown.out
    assert "\nKeys\n(none)\n" in shown.out
    assert "web-1" in shown.out and "flareport.service" in shown.out and "needs a port (host:port)" in shown.out

    detail = run_cli("agents", "show", "agt-web", "--json").json()
    assert detail["agent"]["agent_id"] == "agt-web" and detail["keys"] == [] and detail["commands"] == []


def test_show_of_an_unknown_agent_exits_5(api: ApiProcess) -> None:
    result = run_cli("agents", "show", "agt-missing")
    assert result.code == 5
    assert "unknown agent 'agt-missing'" in result.err


def test_enroll_rename_decommission_write_intents(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_active_agent())
    enrolled = run_cli("agents", "enroll", "agt-web", "--tunnel-name", "edge-2", "--zone", "example.com")
    assert enrolled.code == 0, enrolled.err
    assert "Agent agt-web: enrolment requested (intent " in enrolled.out
    renamed = run_cli("agents", "rename", "agt-web", "web two", "--json")
    assert renamed.code == 0 and set(renamed.json()) == {"intent_id", "stream_id"}
    assert run_cli("agents", "decommission", "agt-web").code == 0

    intents = [(type(i).__name__, i.agent_id) for i in readmodel.intents()]
    assert intents == [("AgentEnrolled", "agt-web"), ("AgentRenamed", "agt-web"), ("AgentDecommissioned", "agt-web")]
    enrol, rename, _ = readmodel.intents()
    assert (enrol.tunnel_name, enrol.allowed_zones) == ("edge-2", ("example.com",))
    assert rename.display_name == "web two"


def test_enroll_refuses_both_tunnel_options_before_calling_the_api(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_active_agent())
    result = run_cli("agents", "enroll", "agt-web", "--tunnel-name", "a", "--tunnel-id", "b")
    assert result.code == 2
    assert "not both" in result.err
    assert readmodel.intents() == []


def test_enroll_with_a_bad_zone_names_the_field(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_active_agent())
    result = run_cli("agents", "enroll", "agt-web", "--zone", "not a zone!")
    assert result.code == 1
    assert "(field: allowed_zones[0])" in result.err


def test_rm_of_an_active_agent_needs_force(api: ApiProcess, readmodel: ReadModel) -> None:
    readmodel.put_agent(_active_agent())
    refused = run_cli("agents", "rm", "agt-web")
    assert refused.code == 1
    assert "decommission it first, or remove with force=true" in refused.err
    assert "[HTTP 409 agent_online]" in refused.err

    forced = run_cli("agents", "rm", "agt-web", "--force")
    assert forced.code == 0, forced.err
    assert "removal (its keys are revoked now) requested" in forced.out
    assert [type(i).__name__ for i in readmodel.intents()] == ["AgentRemoved"]


def test_rm_of_a_pending_agent_revokes_its_key(api: ApiProcess) -> None:
    body = run_cli("keys", "create", "short-lived", "--json").json()
    agent_id = register_agent(api.url, body["key"])
    assert run_cli("agents", "rm", agent_id).code == 0
    assert row(run_cli("keys", "ls"), body["info"]["key_id"])[2] == "revoked"
