"""Printing a per-object report for humans: what ``flareport import dockflare`` and ``flareport restore`` would do
(a dry run) or did (applied) to each object, one line each with its notes below it, then the counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LABELS = {"access_group": "access group", "manual_rule": "manual rule", "agent": "agent"}


def objects(items: Iterable[Mapping[str, Any]], *, applied: bool) -> None:
    verb = {"create": "created" if applied else "would create"}
    for item in items:
        action = verb.get(item["action"], item["action"])
        print(f"  {action:<13} {LABELS.get(item['kind'], item['kind'])} {item['id']}")
        for note in item["notes"]:
            print(f"                  - {note}")


def counts(summary: Mapping[str, int], *, applied: bool) -> None:
    print("Summary: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if not applied and summary.get("create"):
        print("Nothing was written; run again with --apply to create the objects marked 'would create'.")
