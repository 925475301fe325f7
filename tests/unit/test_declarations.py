"""The comparison shared by ``flareport import dockflare`` and restoring a backup (flareport_common.declarations)."""

from __future__ import annotations

from flareport_common.declarations import group_action, rule_action, same_rule, summary

GROUP = {"name": "Ops", "include": [{"everyone": {}}]}


def test_unset_fields_do_not_make_a_difference_but_access_rule_types_do() -> None:
    stored = {**GROUP, "decision": "allow", "exclude": [], "require": None, "session_duration": None}
    assert group_action(GROUP, stored) == "unchanged"
    assert group_action(GROUP, {**stored, "include": [{"certificate": {}}]}) == "conflict", (
        "an Access rule's empty value is its meaning: {'everyone': {}} is not {'certificate': {}}"
    )
    assert group_action(GROUP, None) == "create"
    assert group_action(GROUP, {**stored, "system": True}) == "conflict", "a system group is never replaced"


def test_a_rule_without_a_zone_matches_the_stored_one_with_its_zone_filled_in() -> None:
    wanted = {"rule": {"hostname": "a.example.com", "service": "http://a:80", "origin": {}}, "tunnel_id": None}
    stored = {"rule": {"hostname": "a.example.com", "service": "http://a:80", "zone_name": "example.com"}}
    assert same_rule(wanted, stored)
    assert rule_action({**wanted, "agent_id": "a1"}, stored, ("rule", "agent_id")) == "conflict"
    assert summary([{"action": "create"}, {"action": "unchanged"}, {"action": "create"}]) == {
        "create": 2,
        "unchanged": 1,
    }
