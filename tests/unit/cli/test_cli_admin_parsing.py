"""Argument parsing, request bodies and error mapping of the admin CLI (no API involved)."""

from __future__ import annotations

import contextlib
import io

import pytest

from flareport_cli import main as flareport
from flareport_cli.admin import access_groups, agents, base, client, keys, manual_rules, ops, rules
from flareport_cli.admin.client import CliError


def test_help_lists_services_and_admin_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        flareport.main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    for name in ("api", "agent", "keys", "agents", "rules", "manual-rules", "access-groups", "status", "dlq"):
        assert f"\n    {name}" in out, f"{name} missing from flareport --help"
    assert "3 cannot reach the API" in out


@pytest.mark.parametrize("command", sorted(flareport.ADMIN))
def test_every_admin_command_resolves_and_answers_help(command: str) -> None:
    entry = flareport.resolve(command)
    assert entry is not None, f"{command} does not resolve"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert entry(["--help"]) == 0
    assert f"usage: flareport {command}" in out.getvalue()


def test_a_missing_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert keys.main([]) == 2
    assert "required: ACTION" in capsys.readouterr().err


def test_connection_comes_from_flags_over_environment() -> None:
    parser = keys.build_parser()
    env = {"FLAREPORT_URL": "http://api.internal:9000/", "MASTER_API_KEY": "from-env"}
    from_env = base.make_context(parser.parse_args(["ls"]), env)
    assert (from_env.client.url, from_env.client.key, from_env.as_json) == (
        "http://api.internal:9000",
        "from-env",
        False,
    )
    flags = base.make_context(parser.parse_args(["ls", "--url", "https://x:1", "--key", "k", "--json"]), env)
    assert (flags.client.url, flags.client.key, flags.as_json) == ("https://x:1", "k", True)
    default = base.make_context(parser.parse_args(["ls", "--key", "k"]), {})
    assert default.client.url == "http://127.0.0.1:8080"


def test_a_bad_url_or_missing_key_is_a_usage_error() -> None:
    parser = keys.build_parser()
    with pytest.raises(CliError) as bad_url:
        base.make_context(parser.parse_args(["ls", "--url", "ftp://x", "--key", "k"]), {})
    assert bad_url.value.code == 2 and "ftp://x" in bad_url.value.message
    with pytest.raises(CliError) as no_key:
        base.make_context(parser.parse_args(["ls"]), {})
    assert no_key.value.code == 2


@pytest.mark.parametrize(
    ("status", "code"), [(400, 1), (401, 4), (403, 1), (404, 5), (409, 1), (422, 1), (429, 4), (500, 1), (503, 1)]
)
def test_http_status_to_exit_code(status: int, code: int) -> None:
    assert client.exit_code_for(status) == code


def test_error_lines_carry_message_field_and_code() -> None:
    body = b'{"error": {"code": "invalid_body", "message": "bad service", "field": "rule.service"}}'
    assert client.describe_error(422, body) == "bad service (field: rule.service) [HTTP 422 invalid_body]"
    no_field = b'{"error": {"code": "too_many_failures", "message": "slow down"}}'
    assert client.describe_error(429, no_field, {"Retry-After": "30"}) == (
        "slow down [HTTP 429 too_many_failures]; retry after 30 s"
    )
    assert client.describe_error(502, b"<html>Bad Gateway</html>\n") == "HTTP 502: <html>Bad Gateway</html>"
    assert client.describe_error(500, b"") == "HTTP 500: no body"


def test_path_segments_are_escaped() -> None:
    assert client.quote("a/b c") == "a%2Fb%20c"


def test_manual_rule_body_from_flags_has_only_what_was_given() -> None:
    parser = manual_rules.build_parser()
    args = parser.parse_args(["create", "nas.example.com", "http://nas:5000"])
    assert manual_rules.request_body(args) == {"rule": {"hostname": "nas.example.com", "service": "http://nas:5000"}}
    full = parser.parse_args(
        ["create", "h.example.com", "https://h", "--path", "/x", "--zone", "example.com", "--agent", "a1",
         "--no-tls-verify", "yes", "--http2-origin", "false", "--access-group", "g1", "--access-group", "g2",
         "--access-session", "8h", "--adopt"]
    )  # fmt: skip
    assert manual_rules.request_body(full) == {
        "rule": {
            "hostname": "h.example.com",
            "service": "https://h",
            "path": "/x",
            "zone_name": "example.com",
            "origin": {"no_tls_verify": True, "http2_origin": False},
            "access": {"groups": ["g1", "g2"], "session_duration": "8h"},
            "adopt": True,
        },
        "agent_id": "a1",
    }


def test_manual_rule_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = manual_rules.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["create", "h", "s", "--no-tls-verify", "maybe"])
    assert "expected true or false" in capsys.readouterr().err
    with pytest.raises(CliError, match="not both"):
        manual_rules.request_body(parser.parse_args(["create", "h", "s", "--from-json", "x.json"]))


def test_access_group_body_from_flags() -> None:
    args = access_groups.build_parser().parse_args(
        ["create", "--name", "ops", "--decision", "deny", "--email", "a@b.c", "--everyone"]
    )
    assert access_groups.request_body(args) == {
        "name": "ops",
        "decision": "deny",
        "include": [{"email": {"email": "a@b.c"}}, {"everyone": {}}],
    }
    assert access_groups.summary([{"email": {"email": "a@b.c"}}, {"everyone": {}}]) == "email:a@b.c, everyone"


def test_agent_and_rule_filters_parse() -> None:
    args = agents.build_parser().parse_args(["ls", "--status", "offline"])
    assert args.status == "offline"
    with pytest.raises(SystemExit):
        agents.build_parser().parse_args(["ls", "--status", "sleeping"])
    args = rules.build_parser().parse_args(["ls", "-q", "app", "--source", "manual"])
    assert (args.search, args.source) == ("app", "manual")
    args = ops.build_reconcile_parser().parse_args(["--no-verify"])
    assert (args.scope, args.verify) == ("all", False)
