"""``flareport rules``, ``manual-rules`` and ``access-groups`` against a real API process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flareport_common.readmodel import RuleRecord
from fptest.cli_helpers import ApiProcess, ReadModel, row, run_cli


def _rules(readmodel: ReadModel) -> None:
    readmodel.put_rule(
        RuleRecord(
            key="app.example.com",
            hostname="app.example.com",
            service="http://app:8080",
            agent_id="agt-1",
            container_name="app",
            zone_name="example.com",
            tunnel_id="tun-1",
            status="active",
            dns_state="active",
            ingress_state="active",
        )
    )
    readmodel.put_rule(
        RuleRecord(
            key="app.example.com/api",
            hostname="app.example.com",
            path="/api",
            service="http://api:9000",
            agent_id="agt-1",
            container_name="api",
            zone_name="example.com",
            status="error",
            error="record already exists",
            error_code=81053,
            dns_state="error",
        )
    )
    readmodel.put_rule(
        RuleRecord(
            key="old.example.org",
            hostname="old.example.org",
            service="http://old:80",
            source="manual",
            manual_rule_id="mr_1",
            zone_name="example.org",
            status="pending_deletion",
            delete_at=datetime.now(UTC) + timedelta(hours=2, seconds=30),
        )
    )


def test_rules_ls_shows_status_source_and_reason(api: ApiProcess, readmodel: ReadModel) -> None:
    _rules(readmodel)
    listed = run_cli("rules", "ls")
    assert listed.code == 0, listed.err
    assert listed.lines()[0].split() == ["HOSTNAME", "SERVICE", "STATUS", "SOURCE", "ZONE", "DETAIL"]
    assert row(listed, "app.example.com") == [
        "app.example.com",
        "http://app:8080",
        "active",
        "agt-1/app",
        "example.com",
        "-",
    ]
    assert row(listed, "app.example.com/api")[2:] == [
        "error", "agt-1/api", "example.com", "record already exists (Cloudflare 81053)"
    ]  # fmt: skip
    assert row(listed, "old.example.org")[2:] == ["pending_deletion", "manual mr_1", "example.org", "deleted in 2h"]


def test_rules_filters_go_to_the_api_and_json_matches(api: ApiProcess, readmodel: ReadModel) -> None:
    _rules(readmodel)
    errors = run_cli("rules", "ls", "--status", "error", "--json").json()
    assert [r["key"] for r in errors["rules"]] == ["app.example.com/api"]
    manual = run_cli("rules", "ls", "--source", "manual")
    assert [line.split()[0] for line in manual.lines()[1:]] == ["old.example.org"]
    searched = run_cli("rules", "ls", "-q", "app", "--zone", "example.com", "--agent", "agt-1", "--json").json()
    assert [r["key"] for r in searched["rules"]] == ["app.example.com", "app.example.com/api"]
    nothing = run_cli("rules", "ls", "--zone", "nowhere.test")
    assert nothing.out == "(none)\n"


def test_rules_show_lists_every_path_of_the_hostname(api: ApiProcess, readmodel: ReadModel) -> None:
    _rules(readmodel)
    shown = run_cli("rules", "show", "app.example.com")
    assert shown.code == 0, shown.err
    blocks = shown.out.split("\n\n")
    assert len(blocks) == 2
    assert "rule:      app.example.com\n" in blocks[0] and "status:    active" in blocks[0]
    assert "rule:      app.example.com/api" in blocks[1]
    assert "reason:    record already exists (Cloudflare 81053)" in blocks[1]
    assert "dns:       error" in blocks[1]

    missing = run_cli("rules", "show", "nothing.example.com")
    assert missing.code == 5 and "unknown hostname" in missing.err


def test_manual_rule_lifecycle(api: ApiProcess, readmodel: ReadModel) -> None:
    created = run_cli(
        "manual-rules", "create", "nas.example.com", "http://192.168.1.10:5000",
        "--zone", "example.com", "--no-tls-verify", "true", "--access-policy", "authenticate", "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    rule_id = created.json()["rule_id"]
    assert created.json()["rule"]["origin"] == {"no_tls_verify": True}

    listed = run_cli("manual-rules", "ls")
    assert row(listed, rule_id) == [
        rule_id, "nas.example.com", "http://192.168.1.10:5000", "example.com", "-", "authenticate",
        row(listed, rule_id)[-1],
    ]  # fmt: skip
    shown = run_cli("manual-rules", "show", rule_id)
    assert "origin:   no_tls_verify=True" in shown.out

    updated = run_cli("manual-rules", "update", rule_id, "nas.example.com", "https://192.168.1.10:5001")
    assert updated.code == 0, updated.err
    assert f"Updated manual rule {rule_id} (nas.example.com)." in updated.out
    after = run_cli("manual-rules", "show", rule_id, "--json").json()
    assert after["rule"]["service"] == "https://192.168.1.10:5001"
    assert "access" not in after["rule"], "update replaces the whole rule: options left out are cleared"

    removed = run_cli("manual-rules", "rm", rule_id)
    assert removed.code == 0, removed.err
    assert run_cli("manual-rules", "show", rule_id).code == 5
    kinds = [type(i).__name__ for i in readmodel.intents()]
    assert kinds == ["ManualRuleUpserted", "ManualRuleUpserted", "ManualRuleDeleted"]


def test_manual_rule_errors_name_the_field(api: ApiProcess) -> None:
    bad = run_cli("manual-rules", "create", "nas.example.com", "ftp://nas")
    assert bad.code == 1
    assert "(field: rule.service)" in bad.err

    run_cli("manual-rules", "create", "dup.example.com", "http://a:1")
    duplicate = run_cli("manual-rules", "create", "dup.example.com", "http://b:2")
    assert duplicate.code == 1 and "[HTTP 409 duplicate_rule]" in duplicate.err

    missing = run_cli("manual-rules", "create", "only-host.example.com")
    assert missing.code == 2 and "HOSTNAME and SERVICE are required" in missing.err


def test_manual_rule_from_json_file(api: ApiProcess, tmp_path: Path) -> None:
    body = {"rule": {"hostname": "git.example.com", "service": "ssh://git:22", "path": None}, "agent_id": "agt-9"}
    source = tmp_path / "rule.json"
    source.write_text(json.dumps(body))
    created = run_cli("manual-rules", "create", "--from-json", str(source), "--json")
    assert created.code == 0, created.err
    assert created.json()["agent_id"] == "agt-9"

    unknown_field = tmp_path / "typo.json"
    unknown_field.write_text(json.dumps({"rule": {"hostname": "x.example.com", "service": "http://x", "srvice": 1}}))
    refused = run_cli("manual-rules", "create", "--from-json", str(unknown_field))
    assert refused.code == 1 and "srvice" in refused.err

    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    assert run_cli("manual-rules", "create", "--from-json", str(not_json)).code == 2


def test_access_group_lifecycle(api: ApiProcess) -> None:
    created = run_cli(
        "access-groups", "create", "--name", "admins", "--email", "a@example.com",
        "--email-domain", "example.org", "--session-duration", "12h", "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    group_id = created.json()["group_id"]

    listed = run_cli("access-groups", "ls")
    cells = row(listed, group_id)
    assert cells[1:4] == ["admins", "allow", "email:a@example.com, email_domain:example.org"]
    assert "12h" in cells

    updated = run_cli("access-groups", "update", group_id, "--name", "everyone", "--everyone")
    assert updated.code == 0, updated.err
    shown = run_cli("access-groups", "show", group_id)
    assert "name:     everyone" in shown.out and "include:  everyone" in shown.out

    assert run_cli("access-groups", "rm", group_id).code == 0
    assert run_cli("access-groups", "show", group_id).code == 5
    assert run_cli("access-groups", "create").code == 2
