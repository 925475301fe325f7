"""``flareport manual-rules``: hostnames published without a container (a NAS, a router, another service).

``create`` and ``update`` build a ``ManualRuleRequest`` from flags (``HOSTNAME SERVICE`` plus options) or take
the whole body from ``--from-json FILE`` (``-`` for stdin) for settings the flags do not cover. ``update`` is a
full replacement, like the API's PUT: options left out are cleared, not kept. The API validates everything
(hostname, service URL, zone, durations) and names the offending field; the CLI only checks the argument shape.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run, usage_error
from flareport_cli.admin.client import quote

HEADERS = ("RULE ID", "HOSTNAME", "SERVICE", "ZONE", "AGENT", "ACCESS", "UPDATED")


def access_label(rule: dict[str, Any]) -> str | None:
    access = rule.get("access") or {}
    if not access:
        return None
    groups = access.get("groups") or ()
    return access.get("policy") or ("groups " + ",".join(groups) if groups else "custom")


def manual_row(item: dict[str, Any]) -> list[Any]:
    rule = item["rule"]
    host = rule["hostname"] + (rule.get("path") or "")
    agent = item.get("agent_id") or (f"tunnel {item['tunnel_id']}" if item.get("tunnel_id") else None)
    return [item["rule_id"], host, rule["service"], rule.get("zone_name"), agent, access_label(rule),
            render.when(item.get("updated_at"))]  # fmt: skip


def _list(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        render.table(HEADERS, (manual_row(r) for r in body["rules"]))

    return ctx.emit(ctx.client.get("/api/v1/manual-rules"), human)


def show_manual(item: dict[str, Any]) -> None:
    rule = item["rule"]
    origin = rule.get("origin") or {}
    render.fields(
        [
            ("rule id", item["rule_id"]),
            ("hostname", rule["hostname"]),
            ("path", rule.get("path")),
            ("service", rule["service"]),
            ("zone", rule.get("zone_name")),
            ("agent", item.get("agent_id")),
            ("tunnel", item.get("tunnel_id")),
            ("origin", ", ".join(f"{k}={v}" for k, v in origin.items()) or None),
            ("access", access_label(rule)),
            ("adopt", rule.get("adopt", False)),
            ("updated", render.when(item.get("updated_at"))),
        ]
    )


def _show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get(f"/api/v1/manual-rules/{quote(args.rule_id)}"), show_manual)


def read_json(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        return json.loads(text)
    except OSError as exc:
        raise usage_error(f"--from-json: cannot read {source}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise usage_error(f"--from-json: {source} is not JSON: {exc}") from None


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ManualRuleRequest`` from ``--from-json`` or from the flags (only options that were given)."""
    if args.from_json is not None:
        if args.hostname is not None:
            raise usage_error("give HOSTNAME SERVICE or --from-json, not both")
        loaded = read_json(args.from_json)
        if not isinstance(loaded, dict):
            raise usage_error('--from-json: expected a JSON object like {"rule": {...}}')
        return loaded
    if args.hostname is None or args.service is None:
        raise usage_error("HOSTNAME and SERVICE are required (or --from-json FILE)")
    rule: dict[str, Any] = {"hostname": args.hostname, "service": args.service}
    for name in ("path", "zone_name"):
        if getattr(args, name) is not None:
            rule[name] = getattr(args, name)
    origin = {
        name: getattr(args, name)
        for name in ("no_tls_verify", "origin_server_name", "http_host_header", "http2_origin")
        if getattr(args, name) is not None
    }
    if origin:
        rule["origin"] = origin
    access: dict[str, Any] = {}
    if args.access_policy is not None:
        access["policy"] = args.access_policy
    if args.access_group:
        access["groups"] = args.access_group
    if args.access_session is not None:
        access["session_duration"] = args.access_session
    if access:
        rule["access"] = access
    if args.adopt:
        rule["adopt"] = True
    body: dict[str, Any] = {"rule": rule}
    if args.agent is not None:
        body["agent_id"] = args.agent
    if args.tunnel is not None:
        body["tunnel_id"] = args.tunnel
    return body


def _create(ctx: Context, args: argparse.Namespace) -> int:
    def human(item: dict[str, Any]) -> None:
        print(f"Created manual rule {item['rule_id']} for {item['rule']['hostname']}{item['rule'].get('path') or ''}.")

    return ctx.emit(ctx.client.post("/api/v1/manual-rules", request_body(args)), human)


def _update(ctx: Context, args: argparse.Namespace) -> int:
    def human(item: dict[str, Any]) -> None:
        print(f"Updated manual rule {item['rule_id']} ({item['rule']['hostname']}{item['rule'].get('path') or ''}).")

    return ctx.emit(ctx.client.put(f"/api/v1/manual-rules/{quote(args.rule_id)}", request_body(args)), human)


def _remove(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        print(f"Deleting manual rule {args.rule_id} (intent {body['intent_id']}); the reconciler removes its records.")

    return ctx.emit(ctx.client.delete(f"/api/v1/manual-rules/{quote(args.rule_id)}"), human)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def rule_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hostname", nargs="?", help="e.g. nas.example.com (or *.example.com)")
    parser.add_argument("service", nargs="?", help="e.g. http://192.168.1.10:5000, tcp://db:5432, http_status:404")
    parser.add_argument("--from-json", metavar="FILE", help="the whole ManualRuleRequest body ('-' for stdin)")
    parser.add_argument("--path", help="only requests under this path")
    parser.add_argument("--zone", dest="zone_name", help="zone of the hostname (default: the longest matching zone)")
    parser.add_argument("--agent", help="pin to this agent's tunnel")
    parser.add_argument("--tunnel", help="publish on this tunnel id")
    parser.add_argument("--no-tls-verify", type=_bool, metavar="BOOL", help="origin: skip TLS verification")
    parser.add_argument("--origin-server-name", help="origin: TLS server name")
    parser.add_argument("--http-host-header", help="origin: Host header")
    parser.add_argument("--http2-origin", type=_bool, metavar="BOOL", help="origin: speak HTTP/2")
    parser.add_argument("--access-policy", choices=("bypass", "authenticate", "default_tld"), help="Access policy")
    parser.add_argument("--access-group", action="append", default=[], help="Access group id (repeatable)")
    parser.add_argument("--access-session", metavar="DURATION", help="Access session duration, e.g. 24h")
    parser.add_argument("--adopt", action="store_true", help="take over an existing DNS record we do not own")


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("manual-rules", "Manual rules: hostnames published without a container.")
    action(actions, "ls", "list manual rules", _list, aliases=["list"])
    show = action(actions, "show", "one manual rule", _show)
    show.add_argument("rule_id")
    create = action(actions, "create", "create a manual rule", _create)
    rule_options(create)
    update = action(actions, "update", "replace a manual rule (options left out are cleared)", _update)
    update.add_argument("rule_id")
    rule_options(update)
    remove = action(actions, "rm", "delete a manual rule", _remove, aliases=["remove"])
    remove.add_argument("rule_id")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
