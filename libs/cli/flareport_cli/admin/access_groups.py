"""``flareport access-groups``: reusable Cloudflare Access policies that rules refer to by group id.

Flags cover the common cases (``--email``, ``--email-domain``, ``--everyone`` as include rules); anything else
(exclude/require rules, IP ranges, identity providers) goes in ``--from-json FILE`` as an ``AccessGroupRequest``.
``create --id ID`` chooses the id labels reference (``access.group=ID``); without it the API derives one from the
name. ``update`` replaces the whole group, like the API's PUT. The system groups (``public-default-bypass``,
``authenticated-default``) are listed as ``system`` and cannot be changed: the API's refusal is printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run, usage_error
from flareport_cli.admin.client import quote
from flareport_cli.admin.manual_rules import read_json

HEADERS = ("GROUP ID", "NAME", "DECISION", "INCLUDE", "EXCLUDE", "REQUIRE", "SESSION", "UPDATED", "KIND")


def summary(rules: list[dict[str, Any]]) -> str | None:
    """``email:a@b.c, everyone`` from Cloudflare rule objects like ``{"email": {"email": "a@b.c"}}``."""
    parts = []
    for rule in rules:
        for kind, value in rule.items():
            inner = list(value.values()) if isinstance(value, dict) else []
            parts.append(f"{kind}:{inner[0]}" if len(inner) == 1 else kind)
    return ", ".join(parts) or None


def group_row(group: dict[str, Any]) -> list[Any]:
    return [group["group_id"], group["name"], group.get("decision"), summary(group.get("include", [])),
            summary(group.get("exclude", [])), summary(group.get("require", [])), group.get("session_duration"),
            render.when(group.get("updated_at")), "system" if group.get("system") else "admin"]  # fmt: skip


def _list(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        render.table(HEADERS, (group_row(g) for g in body["groups"]))

    return ctx.emit(ctx.client.get("/api/v1/access-groups"), human)


def show_group(group: dict[str, Any]) -> None:
    system = [("kind", "system (built in, cannot be changed)"), ("meaning", group.get("description"))]
    render.fields(
        [
            *(system if group.get("system") else []),
            ("group id", group["group_id"]),
            ("name", group["name"]),
            ("decision", group.get("decision")),
            ("include", summary(group.get("include", []))),
            ("exclude", summary(group.get("exclude", []))),
            ("require", summary(group.get("require", []))),
            ("session", group.get("session_duration")),
            ("updated", render.when(group.get("updated_at"))),
        ]
    )


def _show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get(f"/api/v1/access-groups/{quote(args.group_id)}"), show_group)


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.from_json is not None:
        if args.name is not None:
            raise usage_error("give --name or --from-json, not both")
        if getattr(args, "id", None) is not None:
            raise usage_error('give --id or --from-json, not both (put "group_id" in the JSON)')
        loaded = read_json(args.from_json)
        if not isinstance(loaded, dict):
            raise usage_error('--from-json: expected a JSON object like {"name": ..., "include": [...]}')
        return loaded
    if args.name is None:
        raise usage_error("--name is required (or --from-json FILE)")
    include: list[dict[str, Any]] = [{"email": {"email": e}} for e in args.email]
    include += [{"email_domain": {"domain": d}} for d in args.email_domain]
    if args.everyone:
        include.append({"everyone": {}})
    body: dict[str, Any] = {"name": args.name, "decision": args.decision, "include": include}
    if args.session_duration is not None:
        body["session_duration"] = args.session_duration
    if getattr(args, "id", None) is not None:
        body["group_id"] = args.id
    return body


def _create(ctx: Context, args: argparse.Namespace) -> int:
    def human(group: dict[str, Any]) -> None:
        print(
            f"Created access group {group['group_id']} ({group['name']}); labels use access.group={group['group_id']}."
        )

    return ctx.emit(ctx.client.post("/api/v1/access-groups", request_body(args)), human)


def _update(ctx: Context, args: argparse.Namespace) -> int:
    def human(group: dict[str, Any]) -> None:
        print(f"Updated access group {group['group_id']} ({group['name']}).")

    return ctx.emit(ctx.client.put(f"/api/v1/access-groups/{quote(args.group_id)}", request_body(args)), human)


def _remove(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        print(f"Deleting access group {args.group_id} (intent {body['intent_id']}).")

    return ctx.emit(ctx.client.delete(f"/api/v1/access-groups/{quote(args.group_id)}"), human)


def group_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="the group's name")
    parser.add_argument("--decision", choices=("allow", "deny", "bypass", "non_identity"), default="allow")
    parser.add_argument("--email", action="append", default=[], help="include this email (repeatable)")
    parser.add_argument("--email-domain", action="append", default=[], help="include this email domain (repeatable)")
    parser.add_argument("--everyone", action="store_true", help="include everyone")
    parser.add_argument("--session-duration", metavar="DURATION", help="e.g. 24h")
    parser.add_argument("--from-json", metavar="FILE", help="the whole AccessGroupRequest body ('-' for stdin)")


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("access-groups", "Access groups: reusable Cloudflare Access policies.")
    action(actions, "ls", "list access groups", _list, aliases=["list"])
    show = action(actions, "show", "one access group", _show)
    show.add_argument("group_id")
    create = action(actions, "create", "create an access group", _create)
    create.add_argument(
        "--id",
        metavar="GROUP_ID",
        help="the id labels reference (access.group=GROUP_ID): lowercase letters, digits, '-', '_', '.' "
        "(default: derived from --name)",
    )
    group_options(create)
    update = action(actions, "update", "replace an access group", _update)
    update.add_argument("group_id")
    group_options(update)
    remove = action(actions, "rm", "delete an access group", _remove, aliases=["remove"])
    remove.add_argument("group_id")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
