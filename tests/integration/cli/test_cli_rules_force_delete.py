"""``flareport rules delete HOSTNAME[/PATH] --force`` and ``flareport audit`` against a real API process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flareport_common.messages.intents import RuleForceDeleted
from flareport_common.readmodel import RuleRecord, RuleStatus
from fptest.cli_helpers import ApiProcess, ReadModel, run_cli


def test_force_delete_of_a_pending_rule_and_its_audit_entry(api: ApiProcess, readmodel: ReadModel) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    statuses: tuple[tuple[str | None, RuleStatus], ...] = (("/api/v2", "pending_deletion"), (None, "active"))
    for path, status in statuses:
        readmodel.put_rule(
            RuleRecord(key="app.example.com" + (path or ""), hostname="app.example.com", path=path,
                       service="http://app:80", agent_id="agt-1", status=status, delete_at=later if path else None)
        )  # fmt: skip

    unforced = run_cli("rules", "delete", "app.example.com/api/v2")
    assert unforced.code == 2 and "--force" in unforced.err
    active = run_cli("rules", "delete", "app.example.com", "--force")
    assert active.code != 0 and "is active, not pending_deletion" in active.err
    assert readmodel.intents() == [], "a refused deletion sends nothing"

    deleted = run_cli("rules", "delete", "app.example.com/api/v2", "--force", "--json")
    assert deleted.code == 0, deleted.err
    [intent] = readmodel.intents()
    assert isinstance(intent, RuleForceDeleted) and (intent.hostname, intent.path) == ("app.example.com", "/api/v2")
    assert deleted.json()["intent_id"] == intent.id

    listed = run_cli("audit", "--json").json()
    assert [(e["actor"], e["action"], e["target"]) for e in listed["entries"]] == [
        ("api", "rule_force_deleted", "app.example.com/api/v2")
    ]
    table = run_cli("audit")
    assert table.lines()[0].split() == ["WHEN", "WHO", "ACTION", "TARGET", "INTENT"]
    cells = [c.strip() for c in table.lines()[1].split("  ") if c.strip()]
    assert cells[0].startswith(datetime.now(UTC).strftime("%Y-%m-%d "))
    assert cells[1:] == ["api", "rule_force_deleted", "app.example.com/api/v2", intent.id]
