"""``flareport access-groups`` with chosen ids and the system groups, against a real ``flareport api`` process."""

from __future__ import annotations

from fptest.cli_helpers import ApiProcess, row, run_cli


def test_create_with_a_chosen_id_then_show_update_and_remove_it(api: ApiProcess) -> None:
    created = run_cli("access-groups", "create", "--id", "admin-users", "--name", "Admins", "--email", "a@example.com")
    assert created.code == 0, created.err
    assert "admin-users" in created.out and "access.group=admin-users" in created.out

    listed = run_cli("access-groups", "ls")
    assert listed.code == 0, listed.err
    cells = row(listed, "admin-users")
    assert cells[1:4] == ["Admins", "allow", "email:a@example.com"] and cells[-1] == "admin"

    assert run_cli("access-groups", "show", "admin-users").code == 0
    updated = run_cli("access-groups", "update", "admin-users", "--name", "Admins", "--email-domain", "example.com")
    assert updated.code == 0, updated.err
    assert "include:  email_domain:example.com" in run_cli("access-groups", "show", "admin-users").out

    again = run_cli("access-groups", "create", "--id", "admin-users", "--name", "Other", "--everyone")
    assert again.code == 1
    assert "admin-users" in again.err and "HTTP 409" in again.err

    assert run_cli("access-groups", "rm", "admin-users").code == 0
    assert run_cli("access-groups", "show", "admin-users").code == 5


def test_without_id_the_name_gives_the_id(api: ApiProcess) -> None:
    created = run_cli("access-groups", "create", "--name", "On Call", "--everyone", "--json")
    assert created.code == 0, created.err
    assert created.json()["group_id"] == "on-call"


def test_a_bad_id_or_an_empty_include_is_refused_with_the_field(api: ApiProcess) -> None:
    bad = run_cli("access-groups", "create", "--id", "Admin Users", "--name", "Admins", "--everyone")
    assert bad.code == 1
    assert "(field: group_id)" in bad.err and "HTTP 422" in bad.err
    empty = run_cli("access-groups", "create", "--id", "admins", "--name", "Admins")
    assert empty.code == 1
    assert "(field: include)" in empty.err
    assert run_cli("access-groups", "show", "admins").code == 5


def test_system_groups_are_listed_marked_and_cannot_be_changed(api: ApiProcess) -> None:
    listed = run_cli("access-groups", "ls")
    assert listed.code == 0, listed.err
    public = row(listed, "public-default-bypass")
    assert public[2:4] == ["bypass", "everyone"] and public[-1] == "system"
    assert row(listed, "authenticated-default")[-1] == "system"

    shown = run_cli("access-groups", "show", "authenticated-default")
    assert shown.code == 0, shown.err
    assert "system" in shown.out and "One-time PIN" in shown.out

    for group_id, argv in (
        ("public-default-bypass", ("rm", "public-default-bypass")),
        ("authenticated-default", ("rm", "authenticated-default")),
        ("authenticated-default", ("update", "authenticated-default", "--name", "mine", "--everyone")),
        ("public-default-bypass", ("create", "--id", "public-default-bypass", "--name", "mine", "--everyone")),
    ):
        refused = run_cli("access-groups", *argv)
        assert refused.code == 1, (argv, refused.out, refused.err)
        assert refused.err.startswith("flareport: error: access group ")
        assert group_id in refused.err and "system group" in refused.err, refused.err
        assert "HTTP 409 system_group" in refused.err, refused.err
    assert row(run_cli("access-groups", "ls"), "public-default-bypass")[-1] == "system"
