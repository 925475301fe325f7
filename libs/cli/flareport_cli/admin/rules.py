"""``flareport rules``: every published hostname (+ path) with its Cloudflare state, from the read model.

Filters are passed to the API (``--status``, ``--source``, ``--agent``, ``--zone``, ``--search``), so ``--json``
returns exactly what the table shows. ``show`` lists every path of one hostname with the state of each part
(DNS, tunnel ingress, Access) and the reason when Cloudflare or a conflict stopped it. ``adopt`` takes over the
foreign DNS records on a hostname in conflict (an admin's one-time grant, used by the dns-worker's next sync).
``delete --force`` removes a rule in ``pending_deletion`` now instead of at the end of its grace period.
``override`` sets a container rule's service, origin options or Access over its labels; ``revert`` drops that.
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
                ("override", ", ".join(rule.get("overridden") or ()) or None),
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


SWITCHES = ("no_tls_verify", "http2_origin", "disable_chunked_encoding", "match_sni_to_host")


def override_body(args: argparse.Namespace, path: str | None) -> dict[str, Any]:
    """The override the options describe; an option left out keeps what the labels say."""
    body: dict[str, Any] = {} if path is None else {"path": path}
    if args.service:
        body["service"] = args.service
    origin: dict[str, Any] = {name: getattr(args, name) == "on" for name in SWITCHES if getattr(args, name)}
    for name in ("origin_server_name", "http_host_header"):
        if getattr(args, name):
            origin[name] = getattr(args, name)
    if origin:
        body["origin"] = origin
    if args.no_access:
        body["access"] = {}
    elif args.access_policy or args.access_groups:
        groups = [g for g in (args.access_groups or "").replace(",", " ").split() if g]
        body["access"] = {"policy": args.access_policy, "groups": groups} if args.access_policy else {"groups": groups}
    return body


def _override(ctx: Context, args: argparse.Namespace) -> int:
    hostname, path = split_rule(args.rule)

    def human(accepted: dict[str, Any]) -> None:
        print(
            f"{args.rule}: overridden (intent {accepted['intent_id']}); its labels no longer decide what you set, "
            f"until `flareport rules revert {args.rule}`."
        )

    return ctx.emit(ctx.client.put(f"/api/v1/rules/{quote(hostname)}/override", override_body(args, path)), human)


def _revert(ctx: Context, args: argparse.Namespace) -> int:
    hostname, path = split_rule(args.rule)

    def human(accepted: dict[str, Any]) -> None:
        print(f"{args.rule}: back to its labels (intent {accepted['intent_id']}).")

    body = {} if path is None else {"path": path}
    return ctx.emit(ctx.client.post(f"/api/v1/rules/{quote(hostname)}/revert", body), human)


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
    override = action(
        actions,
        "override",
        "set a container rule's service, origin options or Access over what its labels say (until revert)",
        _override,
    )
    override.add_argument("rule", metavar="HOSTNAME[/PATH]")
    override.add_argument("--service", help="the origin service, e.g. https://app:8443")
    override.add_argument("--origin-server-name", help="the TLS server name to expect from the origin")
    override.add_argument("--http-host-header", help="the Host header to send to the origin")
    for name in SWITCHES:
        override.add_argument("--" + name.replace("_", "-"), choices=("on", "off"), help="cloudflared's " + name)
    override.add_argument("--access-policy", choices=("bypass", "authenticate", "default_tld"))
    override.add_argument("--access-groups", help="Access group ids, comma-separated")
    override.add_argument("--no-access", action="store_true", help="no Access app, whatever the labels ask for")
    revert = action(actions, "revert", "drop the override: the rule follows its container's labels again", _revert)
    revert.add_argument("rule", metavar="HOSTNAME[/PATH]")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
