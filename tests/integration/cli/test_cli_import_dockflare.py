"""``flareport import dockflare`` against a real ``flareport api`` process: dry run, apply, apply again, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fptest.cli_helpers import ApiProcess, ReadModel, run_cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dockflare"
STATE = str(FIXTURES / "state.json")


def admin_groups() -> dict[str, dict[str, Any]]:
    listed = run_cli("access-groups", "ls", "--json")
    assert listed.code == 0, listed.err
    return {g["group_id"]: g for g in listed.json()["groups"] if not g.get("system")}


def manual_rules() -> dict[str, dict[str, Any]]:
    listed = run_cli("manual-rules", "ls", "--json")
    assert listed.code == 0, listed.err
    return {r["rule"]["hostname"] + (r["rule"].get("path") or ""): r for r in listed.json()["rules"]}


def actions(document: dict[str, Any]) -> dict[str, str]:
    return {o["id"]: o["action"] for o in document["objects"]}


def test_dry_run_apply_and_apply_again(api: ApiProcess, readmodel: ReadModel) -> None:
    dry = run_cli("import", "dockflare", STATE)
    assert dry.code == 0, dry.err
    assert "would create" in dry.out and "access group admins" in dry.out and "dry run" in dry.out
    assert "agent edge-1" in dry.out and "SECRET" not in dry.out
    assert admin_groups() == {} and manual_rules() == {} and readmodel.intents() == []

    applied = run_cli("import", "dockflare", str(FIXTURES / "dockflare_backup.zip"), "--apply", "--json")
    assert applied.code == 0, applied.err
    document = applied.json()
    assert document["applied"] and document["source"].endswith("dockflare_backup.zip:state.json")
    assert actions(document) == {
        "public-default-bypass": "system",
        "authenticated-default": "system",
        "admins": "created",
        "office": "created",
        "nas.example.com": "created",
        "router.example.com/admin": "created",
        "status.example.com": "created",
    }
    groups = admin_groups()
    assert set(groups) == {"admins", "office"}
    assert groups["admins"]["include"] == [{"email": {"email": "admin@example.com"}}]
    assert groups["admins"]["session_duration"] == "12h"
    rules = manual_rules()
    assert set(rules) == {"nas.example.com", "router.example.com/admin", "status.example.com"}
    nas = rules["nas.example.com"]
    assert nas["tunnel_id"] == "tunnel-home" and nas["rule"]["access"]["groups"] == ["admins"]
    assert nas["rule"]["origin"] == {"no_tls_verify": True, "origin_server_name": "nas.local"}
    assert rules["router.example.com/admin"]["rule"]["access"] == {"policy": "authenticate"}
    intents = len(readmodel.intents())

    again = run_cli("import", "dockflare", STATE, "--apply", "--json")
    assert again.code == 0, again.err
    assert set(actions(again.json()).values()) == {"system", "unchanged"}
    assert len(readmodel.intents()) == intents


def test_an_existing_different_object_is_a_conflict_and_kept(api: ApiProcess) -> None:
    made = run_cli("access-groups", "create", "--id", "admins", "--name", "Admins", "--email", "other@example.com")
    assert made.code == 0, made.err
    result = run_cli("import", "dockflare", STATE, "--apply", "--json")
    assert result.code == 1
    assert actions(result.json())["admins"] == "conflict"
    assert actions(result.json())["office"] == "created"
    assert admin_groups()["admins"]["include"] == [{"email": {"email": "other@example.com"}}]


def test_broken_files_error_and_write_nothing(api: ApiProcess, readmodel: ReadModel) -> None:
    for name, expected in (
        ("truncated_state.json", "not valid JSON"),
        ("backup_without_state.zip", "no member 'state.json'"),
        ("invalid_rule_state.json", "managed_rules.bad.example.com.service"),
    ):
        result = run_cli("import", "dockflare", str(FIXTURES / name), "--apply")
        assert result.code == 2, (name, result.out, result.err)
        assert expected in result.err and "nothing was imported" in result.err
    assert run_cli("import", "dockflare", str(FIXTURES / "missing.json")).code == 2
    assert admin_groups() == {} and manual_rules() == {} and readmodel.intents() == []
