"""``flareport keys`` against a real API process: the key lifecycle, ``--json``, and the error exit codes."""

from __future__ import annotations

import urllib.error

import pytest
import yaml

from flareport_cli.admin.keys import COMPOSE_MARKER
from flareport_cli.localredis import free_port
from fptest.cli_helpers import ApiProcess, ReadModel, register_agent, row, run_cli


def test_create_shows_the_key_once_with_an_agent_snippet_and_ls_lists_it(api: ApiProcess) -> None:
    created = run_cli("keys", "create", "edge-1")
    assert created.code == 0, created.err
    key_line = next(line.strip() for line in created.lines() if line.startswith("  FLAREPORT_API_KEY="))
    key = key_line.split("=", 1)[1]
    assert f"FLAREPORT_MASTER_URL={api.url}" in created.out
    assert "shown only now" in created.out
    compose_text = created.out.split(COMPOSE_MARKER + "\n", 1)[1]
    compose = yaml.safe_load(compose_text)
    assert set(compose["services"]) == {"agent", "docker-socket-proxy"}
    assert compose["services"]["agent"]["environment"]["DOCKER_HOST"] == "tcp://docker-socket-proxy:2375"
    assert compose["networks"]["cloudflare-net"]["external"] is True
    assert key not in compose_text, "the compose file reads the key from the .env printed above it"

    listed = run_cli("keys", "ls")
    assert listed.code == 0, listed.err
    assert listed.lines()[0].split() == ["KEY", "ID", "LABEL", "STATUS", "AGENT", "CREATED", "LAST", "USED"]
    key_id = listed.lines()[1].split()[0]
    cells = row(listed, key_id)
    assert cells[1:4] == ["edge-1", "active", "-"], f"unbound active key expected: {cells}"
    assert key not in listed.out, "the key itself must never be listed"


def test_json_output_is_the_api_body(api: ApiProcess) -> None:
    created = run_cli("keys", "create", "edge-2", "--json")
    assert created.code == 0, created.err
    body = created.json()
    assert set(body) == {"key", "info", "env", "compose"}
    assert body["env"] == f"FLAREPORT_MASTER_URL={api.url}\nFLAREPORT_API_KEY={body['key']}\n"
    assert "edge-2" in body["compose"] and body["key"] not in body["compose"]
    assert body["info"]["label"] == "edge-2" and body["info"]["status"] == "active"

    listed = run_cli("keys", "ls", "--json").json()
    assert [k["key_id"] for k in listed["keys"]] == [body["info"]["key_id"]]

    shown = run_cli("keys", "show", body["info"]["key_id"], "--json").json()
    assert shown == listed["keys"][0]


def test_revoke_marks_the_key_revoked_and_the_agent_is_refused(api: ApiProcess) -> None:
    body = run_cli("keys", "create", "edge-3", "--json").json()
    key_id = body["info"]["key_id"]
    register_agent(api.url, body["key"])

    revoked = run_cli("keys", "revoke", key_id)
    assert revoked.code == 0, revoked.err
    assert f"Revoked key {key_id} (edge-3)" in revoked.out
    shown = run_cli("keys", "show", key_id)
    assert "status:    revoked" in shown.out

    # The revoked key is now refused by the API on the agent's side.
    with pytest.raises(urllib.error.HTTPError, match="401"):
        register_agent(api.url, body["key"])


def test_roll_makes_a_new_key_for_the_bound_agent(api: ApiProcess, readmodel: ReadModel) -> None:
    body = run_cli("keys", "create", "edge-4", "--json").json()
    agent_id = register_agent(api.url, body["key"])

    rolled = run_cli("keys", "roll", body["info"]["key_id"], "--json")
    assert rolled.code == 0, rolled.err
    answer = rolled.json()
    assert answer["agent_id"] == agent_id
    intents = [(type(i).__name__, i.agent_id, i.key_id) for i in readmodel.intents()]
    assert intents == [("KeyRolled", agent_id, answer["new_key_id"])]

    listed = run_cli("keys", "ls")
    assert row(listed, answer["new_key_id"])[2:4] == ["active", agent_id]


def test_roll_of_an_unbound_key_is_a_conflict_with_the_api_message(api: ApiProcess) -> None:
    key_id = run_cli("keys", "create", "edge-5", "--json").json()["info"]["key_id"]
    rolled = run_cli("keys", "roll", key_id)
    assert rolled.code == 1
    assert "only an active key bound to an agent can be rolled" in rolled.err
    assert "[HTTP 409 not_rollable]" in rolled.err
    assert rolled.out == ""


def test_unknown_key_exits_5_and_invalid_label_names_the_field(api: ApiProcess) -> None:
    missing = run_cli("keys", "show", "nosuchkey")
    assert missing.code == 5
    assert "unknown key 'nosuchkey'" in missing.err

    bad = run_cli("keys", "create", "")
    assert bad.code == 1
    assert "(field: label)" in bad.err and "[HTTP 422 invalid_body]" in bad.err


def test_json_errors_carry_the_api_error_body_on_stderr(api: ApiProcess) -> None:
    missing = run_cli("keys", "show", "nosuchkey", "--json")
    assert missing.code == 5
    assert missing.out == ""
    assert '"code":"not_found"' in missing.err.replace(" ", "")


def test_a_wrong_admin_key_exits_4(api: ApiProcess) -> None:
    refused = run_cli("keys", "ls", "--key", "not-the-master-key-at-all")
    assert refused.code == 4
    assert "check MASTER_API_KEY or --key" in refused.err and "HTTP 401" in refused.err


def test_an_unreachable_api_exits_3_naming_the_url(api: ApiProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("keys", "ls", "--url", url)
    assert result.code == 3
    assert result.err.startswith(f"flareport: error: cannot reach the API at {url}: ")
    assert "refused" in result.err.lower()
