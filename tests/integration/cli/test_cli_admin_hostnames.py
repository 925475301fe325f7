"""``flareport hostnames assign/unassign`` against a real API process: the intents the reconciler acts on."""

from __future__ import annotations

from flareport_common.messages.intents import HostnameAssigned
from fptest.cli_helpers import ApiProcess, ReadModel, run_cli


def test_assign_and_unassign_write_intents_naming_the_owner(api: ApiProcess, readmodel: ReadModel) -> None:
    assigned = run_cli("hostnames", "assign", "App.Example.com", "--agent", "agt-web")
    assert assigned.code == 0, assigned.err
    assert "Hostname App.Example.com: assignment to agent agt-web requested (intent " in assigned.out
    tunnel = run_cli("hostnames", "assign", "app.example.com", "--tunnel", "tun-1")
    assert tunnel.code == 0, tunnel.err
    lifted = run_cli("hostnames", "unassign", "app.example.com")
    assert lifted.code == 0, lifted.err
    intents = readmodel.intents()
    assert all(isinstance(i, HostnameAssigned) for i in intents)
    assert [(i.hostname, i.owner) for i in intents] == [
        ("app.example.com", "agent:agt-web"),
        ("app.example.com", "tunnel:tun-1"),
        ("app.example.com", None),
    ]


def test_a_bad_hostname_or_owner_is_refused_naming_the_field(api: ApiProcess, readmodel: ReadModel) -> None:
    bad = run_cli("hostnames", "assign", "not_a_host", "--agent", "agt-web")
    assert bad.code != 0 and "hostname" in bad.err, bad.err
    owner = run_cli("hostnames", "assign", "app.example.com", "--agent", "bad id!")
    assert owner.code != 0 and "agent_id" in owner.err, owner.err
    missing = run_cli("hostnames", "assign", "app.example.com")
    assert missing.code != 0
    assert readmodel.intents() == []
