"""``flareport import dockflare PATH [--apply] [--json]``: bring DockFlare's access groups and manual rules over.

The file (a DockFlare ``state.json`` or backup ``.zip``) is parsed into a plan first
(flareport_cli.dockflare_import); a file that is not one, or any object in it that Flareport would refuse, stops
the run before anything is sent. The plan is then compared with what the API holds: access groups by id, manual
rules by hostname + path. Each object is ``create`` (missing), ``unchanged`` (present and equal) or ``conflict``
(present and different: never overwritten). Without ``--apply`` nothing is written; with it the missing objects
are created (groups first, so rules can refer to them), and a second run reports everything ``unchanged``.
Docker-sourced rules and agents are listed with what each host must do. Exit codes: 0 done, 1 a conflict or an
API error, 2 a file that cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flareport_cli.admin import report
from flareport_cli.admin.base import Context, connection_options, run, usage_error
from flareport_cli.admin.client import EXIT_API, EXIT_OK, EXIT_USAGE, CliError
from flareport_cli.dockflare_import import ImportFormatError, Plan, parse
from flareport_common.declarations import entry, group_action, rule_action, rule_key, summary


def compare(plan: Plan, groups: list[dict[str, Any]], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per planned object, what will happen: system / create / unchanged / conflict."""
    by_id = {g["group_id"]: g for g in groups}
    by_key = {rule_key(r["rule"]): r for r in rules}
    report: list[dict[str, Any]] = []
    for group in plan.groups:
        if group.system:
            report.append(entry("access_group", group.group_id, "system", group.notes, name=group.name))
            continue
        action = group_action(group.body, by_id.get(group.group_id))
        notes = list(group.notes)
        if action == "conflict":
            notes.append("a Flareport group with this id differs; left as it is (compare with access-groups show)")
        report.append(entry("access_group", group.group_id, action, notes, name=group.name))
    for rule in plan.rules:
        key = rule.hostname + (rule.path or "")
        existing = by_key.get(key)
        notes = list(rule.notes)
        action = rule_action(rule.body, existing)
        if existing is not None and action == "conflict":
            notes.append(f"manual rule {existing['rule_id']} publishes {key} differently; left as it is")
        extra = {"rule_id": existing["rule_id"]} if existing else {}
        report.append(entry("manual_rule", key, action, notes, service=rule.body["rule"]["service"], **extra))
    return report


def adoption(plan: Plan) -> dict[str, Any]:
    """What happens to what DockFlare made in Cloudflare, and how to see it record by record before switching."""
    steps = [
        "DNS records DockFlare made (proxied CNAMEs to its tunnel, no comment) are adopted in place at the first "
        "sync of a hostname Flareport publishes: no delete, no re-create; other records on those names stay "
        "conflicts, shown on the rule"
    ]
    steps += [f"see each record before enrolling: flareport doctor --tunnel {tunnel}" for tunnel in plan.tunnels]
    steps.append(
        "Access apps DockFlare made (DockFlare-<host>) are adopted in place only with "
        "FLAREPORT_ADOPT_DOCKFLARE_ACCESS=true on the dns-worker; DockFlare's reusable policies are left as they are"
    )
    return {"tunnels": list(plan.tunnels), "steps": steps}


def _print_human(document: dict[str, Any]) -> None:
    print(f"DockFlare import from {document['source']} ({'applied' if document['applied'] else 'dry run'})")
    report.objects(document["objects"], applied=document["applied"])
    for item in document["information"]:
        label = "agent" if item["kind"] == "agent" else "docker rule"
        print(f"  {'info':<13} {label} {item['name']}: {item['todo']}")
    for warning in document["warnings"]:
        print(f"  {'warning':<13} {warning}")
    for step in document["adoption"]["steps"]:
        print(f"  {'adoption':<13} {step}")
    report.counts(document["summary"], applied=document["applied"])


def _run(ctx: Context, args: argparse.Namespace, plan: Plan) -> int:
    groups = ctx.client.get("/api/v1/access-groups").json()["groups"]
    rules = ctx.client.get("/api/v1/manual-rules").json()["rules"]
    objects = compare(plan, groups, rules)
    if args.apply:
        by_id = {g.group_id: g for g in plan.groups}
        by_key = {r.hostname + (r.path or ""): r for r in plan.rules}
        for item in objects:
            if item["action"] != "create":
                continue
            if item["kind"] == "access_group":
                ctx.client.post("/api/v1/access-groups", by_id[item["id"]].body)
            else:
                created = ctx.client.post("/api/v1/manual-rules", by_key[item["id"]].body).json()
                item["rule_id"] = created["rule_id"]
            item["action"] = "created"
    counts = summary(objects)
    counts["information"] = len(plan.info)
    counts["warnings"] = len(plan.warnings)
    document = {
        "source": plan.source,
        "applied": bool(args.apply),
        "objects": objects,
        "information": [{"kind": i.kind, "name": i.name, "todo": i.todo, **i.details} for i in plan.info],
        "warnings": list(plan.warnings),
        "adoption": adoption(plan),
        "summary": counts,
    }
    if ctx.as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        _print_human(document)
    return EXIT_API if counts.get("conflict") else EXIT_OK


def _dockflare(ctx: Context, args: argparse.Namespace) -> int:
    # Parsed in main() before the connection is set up; here only the API is asked.
    plan: Plan = args.plan
    return _run(ctx, args, plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flareport import", description="Import another tool's state.")
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    dockflare = sources.add_parser(
        "dockflare",
        help="a DockFlare state.json or backup .zip: access groups and manual rules",
        description="Import DockFlare's access groups (under their ids) and manual rules. A dry run unless --apply; "
        "existing objects are never changed (a differing one is reported as a conflict).",
        parents=[connection_options()],
    )
    dockflare.add_argument("path", help="DockFlare's state.json or a DockFlare backup .zip")
    dockflare.add_argument("--apply", action="store_true", help="create what is missing (default: dry run)")
    dockflare.set_defaults(handler=_dockflare)
    return parser


def load_plan(path: str) -> Plan:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        plan = parse(data, path)
    except ImportFormatError as exc:
        raise CliError(f"{exc.message}; nothing was imported", EXIT_USAGE) from None
    if plan.errors:
        lines = "\n  ".join(plan.errors)
        raise CliError(
            f"{plan.source}: {len(plan.errors)} object(s) Flareport would refuse; nothing was imported:\n  {lines}",
            EXIT_USAGE,
        )
    return plan


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    arguments = list(argv)
    try:
        known, _ = parser.parse_known_args(arguments)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        plan = load_plan(known.path)
    except CliError as exc:
        print(f"flareport: error: {exc.message}", file=sys.stderr)
        return exc.code

    parser.set_defaults(plan=plan)
    return run(parser, arguments)
