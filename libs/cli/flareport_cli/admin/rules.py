"""``flareport rules``: every published hostname (+ path) with its Cloudflare state, from the read model.

Filters are passed to the API (``--status``, ``--source``, ``--agent``, ``--zone``, ``--search``), so ``--json``
returns exactly what the table shows. ``show`` lists every path of one hostname with the state of each part
(DNS, tunnel ingress, Access) and the reason when Cloudflare or a conflict stopped it. ``adopt`` takes over the
foreign DNS records on a hostname in conflict (an admin's one-time grant, used by the dns-worker's next sync).
``delete --force`` removes a rule in ``pending_deletion`` now instead of at the end of its grace period.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run, usage_error
from flareport_cli.admin.client import quote

STATUSES = ("pending", "active", "error", "pending_deletion", "conflict")
HEADERS = ("HOSTNAME", "SERVICE", "STATUS", "SOURCE", "ZONE", "DETAIL")


def source(rule: dict[str, Any]) -> str:
    if rule.get("source") == "manual":
        return f"manual {rule.get('manual_rule_id') or ''}".strip()
    container = rule.get("container_name") or rule.get("container_id")
    return f"{rule.get('agent_id') or '?'}/{container or '?'}"


def detail(rule: dict[str, Any]) -> str | None:
    """Why a rule is not active, or when a pending deletion happens."""
    if rule.get("status") == "pending_deletion":
        return f"deleted {render.age(rule.get('delete_at'))}"
    reason = rule.get("error")
    if reason and rule.get("error_code"):
        return f"{reason} (Cloudflare {rule['error_code']})"
    return str(reason) if reason else None


def rule_row(rule: dict[str, Any]) -> list[Any]:
    return [rule["key"], rule["service"], rule["status"], source(rule), rule.get("zone_name"), detail(rule)]


def _list(ctx: Context, args: argparse.Namespace) -> int:
    query = {"status": args.status, "source": args.source, "agent_id": args.agent, "zone": args.zone, "q": args.search}

    def human(body: dict[str, Any]) -> None:
        render.table(HEADERS, (rule_row(r) for r in body["rules"]))

    return ctx.emit(ctx.client.get("/api/v1/rules", query), human)


def show_rules(body: dict[str, Any]) -> None:
    for index, rule in enumerate(body["rules"]):
        if index:
            print()
        access = rule.get("access") or {}
        render.fields(
            [
                ("rule", rule["key"]),
                ("service", rule["service"]),
                ("status", rule["status"]),
                ("reason", detail(rule)),
                ("source", source(rule)),
                ("zone", rule.get("zone_name")),
                ("tunnel", rule.get("tunnel_id")),
                ("dns", rule.get("dns_state")),
                ("ingress", rule.get("ingress_state")),
                ("access", f"{access.get('policy') or 'groups'}: {rule.get('access_state')}" if access else None),
                ("adopted", "; ".join(f"{part}: {what}" for part, what in (rule.get("adopted") or {}).items()) or None),
                ("delete at", render.when(rule.get("delete_at"))),
                ("updated", render.when(rule.get("updated_at"))),
            ]
        )


def _show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get(f"/api/v1/rules/{quote(args.hostname)}"), show_rules)


def _adopt(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        print(
            f"{args.hostname}: the foreign DNS records on the name will be taken over at the next sync of its zone "
            f"(requested now, intent {body['intent_id']}); `flareport rules show {args.hostname}` shows the result."
        )

    return ctx.emit(ctx.client.post(f"/api/v1/rules/{quote(args.hostname)}/adopt"), human)


def split_rule(value: str) -> tuple[str, str | None]:
    """``HOSTNAME[/PATH]`` -> (hostname, path or None): the path starts at the first ``/``, as a rule's key does."""
    hostname, slash, rest = value.partition("/")
    return hostname, (slash + rest) if slash else None


def _delete(ctx: Context, args: argparse.Namespace) -> int:
    if not args.force:
        raise usage_error(
            "a container's rule goes when its container does, after the grace period; `--force` deletes a rule in "
            "pending_deletion now (a manual rule is removed with `flareport manual-rules rm`)"
        )
    hostname, path = split_rule(args.rule)
    body = {} if path is None else {"path": path}

    def human(accepted: dict[str, Any]) -> None:
        print(
            f"{args.rule}: deleted now instead of at the end of its grace period (intent {accepted['intent_id']}, "
            "recorded in `flareport audit`)."
        )

    return ctx.emit(ctx.client.post(f"/api/v1/rules/{quote(hostname)}/force-delete", body), human)


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("rules", "Published rules (from containers and manual rules) and their state.")
    ls = action(actions, "ls", "list rules", _list, aliases=["list"])
    ls.add_argument("--status", choices=STATUSES, help="only rules with this status")
    ls.add_argument("--source", choices=("container", "manual"), help="only rules from this source")
    ls.add_argument("--agent", help="only rules published by this agent id")
    ls.add_argument("--zone", help="only rules in this zone")
    ls.add_argument("--search", "-q", help="only hostnames containing this text")
    show = action(actions, "show", "every rule (path) of one hostname", _show)
    show.add_argument("hostname")
    adopt = action(
        actions,
        "adopt",
        "take over the DNS records Flareport did not make on a hostname in conflict (one CNAME kept in place, "
        "the other colliding records deleted)",
        _adopt,
    )
    adopt.add_argument("hostname")
    delete = action(
        actions,
        "delete",
        "with --force: delete a rule in pending_deletion now instead of at the end of its grace period (a "
        "container that runs again keeps its rule)",
        _delete,
        aliases=["rm"],
    )
    delete.add_argument("rule", metavar="HOSTNAME[/PATH]")
    delete.add_argument("--force", action="store_true", help="skip the rest of the grace period (required)")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
