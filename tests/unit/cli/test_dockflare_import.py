"""The DockFlare importer's parser: a state.json or backup zip into a plan, and clear errors for bad files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from flareport_cli.admin.importer import adoption
from flareport_cli.dockflare_import import ImportFormatError, Plan, parse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dockflare"


def load(name: str) -> Plan:
    return parse((FIXTURES / name).read_bytes(), name)


def test_state_file_groups_system_groups_and_several_policies() -> None:
    plan = load("state.json")
    groups = {g.group_id: g for g in plan.groups}
    assert groups["public-default-bypass"].system and groups["public-default-bypass"].body == {}
    assert groups["authenticated-default"].system
    admins = groups["admins"]
    assert not admins.system and not admins.errors
    assert admins.body == {
        "group_id": "admins",
        "name": "Admins",
        "decision": "allow",
        "include": [{"email": {"email": "admin@example.com"}}],
        "session_duration": "12h",
    }
    office = groups["office"]
    assert office.body["decision"] == "bypass" and office.body["include"] == [{"ip": {"ip": "203.0.113.0/24"}}]
    assert any("'Allow staff'" in n for n in office.notes) and any("'Default Deny'" in n for n in office.notes)
    assert "access_groups.office.favourite_colour: not understood, not imported" in plan.warnings
    assert plan.errors == ()


def test_manual_rules_with_path_origin_access_and_tunnel() -> None:
    rules = {r.key: r for r in load("state.json").rules}
    assert set(rules) == {"nas.example.com", "router.example.com|/admin", "status.example.com"}
    nas = rules["nas.example.com"].body
    assert nas["tunnel_id"] == "tunnel-home"
    assert nas["rule"]["origin"] == {"no_tls_verify": True, "origin_server_name": "nas.local"}
    assert list(nas["rule"]["access"]["groups"]) == ["admins"]
    router = rules["router.example.com|/admin"].body["rule"]
    assert router["path"] == "/admin" and router["access"] == {"policy": "authenticate"}
    assert router["origin"] == {"http_host_header": "router.lan"}
    # DockFlare's legacy group id "bypass" is the public system group.
    assert list(rules["status.example.com"].body["rule"]["access"]["groups"]) == ["public-default-bypass"]


def test_docker_rules_agents_and_unknown_keys_are_information_and_warnings() -> None:
    plan = load("state.json")
    docker = [i for i in plan.info if i.kind == "docker_rule"]
    agents = [i for i in plan.info if i.kind == "agent"]
    assert [d.name for d in docker] == ["app.example.com"] and "same labels" in docker[0].todo
    assert [a.name for a in agents] == ["edge-1"] and "home-tunnel" in agents[0].todo
    assert "dashboard_theme: not understood, not imported" in plan.warnings
    assert any("old.example.com" in w and "deletion" in w for w in plan.warnings)
    assert "SECRET" not in repr(plan)


def test_backup_zip_reads_its_state_member() -> None:
    plan = load("dockflare_backup.zip")
    assert plan.source == "dockflare_backup.zip:state.json"
    assert plan.rules == load("state.json").rules and plan.groups == load("state.json").groups


def test_a_state_member_in_a_folder_is_found() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/state.json", (FIXTURES / "state.json").read_bytes())
    assert parse(buffer.getvalue(), "b.zip").source == "b.zip:data/state.json"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("backup_without_state.zip", "backup_without_state.zip: no member 'state.json'"),
        ("truncated_state.json", "truncated_state.json: not valid JSON"),
        ("wrong_shape_state.json", "key 'access_groups' must be an object"),
    ],
)
def test_broken_files_name_what_is_wrong(name: str, expected: str) -> None:
    with pytest.raises(ImportFormatError) as caught:
        load(name)
    assert expected in caught.value.message


def test_other_json_and_a_broken_zip_are_refused() -> None:
    with pytest.raises(ImportFormatError, match="none of the keys"):
        parse(b'{"hello": 1}', "x.json")
    with pytest.raises(ImportFormatError, match="expected a JSON object"):
        parse(b"[]", "x.json")
    with pytest.raises(ImportFormatError, match="not a readable zip"):
        parse(b"PK\x03\x04broken", "x.zip")


def test_an_object_flareport_would_refuse_is_a_plan_error_naming_the_key() -> None:
    plan = load("invalid_rule_state.json")
    assert len(plan.errors) == 1 and plan.errors[0].startswith("managed_rules.bad.example.com.service")


def test_a_group_with_a_bad_id_or_no_policy_is_an_error() -> None:
    state = b'{"access_groups": {"Admins": {"policies": [{"decision": "allow", "include": [{"everyone": {}}]}]},'
    state += b' "empty": {"display_name": "Empty", "policies": []}}}'
    errors = parse(state, "s.json").errors
    assert any(e.startswith("access_groups.Admins:") for e in errors)
    assert any(e.startswith("access_groups.empty.policies") for e in errors)


def test_the_plan_names_dockflares_tunnels_and_what_is_adopted_per_rule() -> None:
    plan = load("state.json")
    assert plan.tunnels == ("tunnel-home",), "the tunnel DockFlare's rules and agents used, once"
    rules = {r.hostname: r for r in plan.rules}
    assert any("adopted in place" in n for n in rules["nas.example.com"].notes)
    protected = next(r for r in plan.rules if r.body.get("rule", {}).get("access"))
    assert any("FLAREPORT_ADOPT_DOCKFLARE_ACCESS=true" in n for n in protected.notes)
    steps = adoption(plan)["steps"]
    assert "see each record before enrolling: flareport doctor --tunnel tunnel-home" in steps
