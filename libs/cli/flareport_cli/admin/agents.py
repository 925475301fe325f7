"""``flareport agents``: list, inspect, enrol, rename, decommission and remove agents.

Agents come from the read model the reconciler writes (plus registered agents it has not recorded yet, shown as
``pending``). Enrol, rename, decommission and remove write intents: the command answers as soon as the API
accepted the intent, and the reconciler acts on it asynchronously, so the output says "requested", not "done".
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run, usage_error
from flareport_cli.admin.client import quote
from flareport_cli.admin.keys import HEADERS as KEY_HEADERS
from flareport_cli.admin.keys import key_row

# The origin kinds the default policy denies (flareport_common.policy; the CLI talks to the API only).
ORIGIN_KINDS = ("link-local", "metadata", "unix", "bastion")
STATUSES = ("pending", "active", "offline", "decommissioning", "decommissioned", "removed")
HEADERS = ("AGENT ID", "NAME", "STATUS", "HOST", "TUNNEL", "LAST SEEN", "VERSION")


def tunnel_label(agent: dict[str, Any]) -> str | None:
    name, ident = agent.get("tunnel_name"), agent.get("tunnel_id")
    if name and ident:
        return f"{name} ({ident})"
    return name or ident


def agent_row(agent: dict[str, Any]) -> list[Any]:
    return [
        agent["agent_id"],
        agent["display_name"],
        agent["status"],
        agent.get("hostname"),
        tunnel_label(agent),
        render.age(agent.get("last_seen")),
        agent.get("version"),
    ]


def _list(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        render.table(HEADERS, (agent_row(a) for a in body["agents"]))

    return ctx.emit(ctx.client.get("/api/v1/agents", {"status": args.status}), human)


def show_agent(detail: dict[str, Any]) -> None:
    agent = detail["agent"]
    tunnel = agent.get("tunnel") or {}
    restarts = tunnel.get("restarts") or 0
    cloudflared = tunnel.get("container_state", "absent") + (f", {restarts} restarts" if restarts else "")
    render.fields(
        [
            ("agent id", agent["agent_id"]),
            ("name", agent["display_name"]),
            ("status", agent["status"]),
            ("host", agent.get("hostname")),
            ("version", agent.get("version")),
            ("registered", render.when(agent.get("registered_at"))),
            ("last seen", f"{render.when(agent.get('last_seen'))} ({render.age(agent.get('last_seen'))})"),
            ("tunnel", tunnel_label(agent)),
            ("cloudflared", cloudflared),
            ("docker reachable", agent.get("docker_reachable")),
            ("allowed zones", agent.get("allowed_zones")),
            ("allowed suffixes", agent.get("allowed_suffixes")),
            ("wildcard names", "allowed" if agent.get("allow_wildcard") else "denied"),
            ("zone apex", "allowed" if agent.get("allow_apex") else "denied"),
            ("origins allowed", agent.get("origin_allow") or "default policy"),
            ("error", agent.get("error")),
        ]
    )
    label_errors = agent.get("label_errors") or ()
    if label_errors:
        print("\nLabel errors (these rules are not published; the containers' other rules are)")
        render.table(
            ("CONTAINER", "LABEL", "REASON"),
            (
                [entry.get("container_name") or entry["container_id"][:12], error["label"], error["reason"]]
                for entry in label_errors
                for error in entry.get("errors", ())
            ),
        )
    print("\nKeys")
    render.table(KEY_HEADERS, (key_row(k) for k in detail.get("keys", ())))
    print("\nRecent commands")
    rows = (
        [
            c["command_id"],
            c["command_type"],
            render.when(c.get("issued_at")),
            render.when(c.get("acked_at")),
            "pending" if c.get("ok") is None else ("ok" if c["ok"] else "failed"),
            c.get("error"),
        ]
        for c in detail.get("commands", ())
    )
    render.table(("COMMAND ID", "TYPE", "ISSUED", "ACKED", "RESULT", "ERROR"), rows)
    beats = detail.get("heartbeats", ())
    if beats:
        newest = beats[0].get("at")
        print(f"\nRecent heartbeats: {len(beats)}, newest {render.when(newest)} ({render.age(newest)})")


def _show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get(f"/api/v1/agents/{quote(args.agent_id)}"), show_agent)


def _accepted(what: str, agent_id: str) -> Any:
    def human(body: dict[str, Any]) -> None:
        print(f"Agent {agent_id}: {what} requested (intent {body['intent_id']}); the reconciler applies it.")

    return human


def _enroll(ctx: Context, args: argparse.Namespace) -> int:
    if args.tunnel_name is not None and args.tunnel_id is not None:
        raise usage_error("give --tunnel-name (create a tunnel) or --tunnel-id (adopt one), not both")
    body: dict[str, Any] = {
        "allowed_zones": args.zone,
        "allowed_suffixes": args.suffix,
        "allow_wildcard": args.allow_wildcard,
        "allow_apex": args.allow_apex,
        "origin_allow": args.origin_allow,
    }
    if args.tunnel_name is not None:
        body["tunnel_name"] = args.tunnel_name
    if args.tunnel_id is not None:
        body["tunnel_id"] = args.tunnel_id
    response = ctx.client.post(f"/api/v1/agents/{quote(args.agent_id)}/enroll", body)
    return ctx.emit(response, _accepted("enrolment", args.agent_id))


def policy_body(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``PATCH .../policy`` the options name; what is not named keeps its value."""
    body: dict[str, Any] = {}
    for field, values, clear in (
        ("allowed_zones", args.zone, args.no_zones),
        ("allowed_suffixes", args.suffix, args.no_suffixes),
        ("origin_allow", args.origin_allow, args.no_origin_allow),
    ):
        if values and clear:
            raise usage_error(f"give values for {field} or clear it, not both")
        if values or clear:
            body[field] = values
    for field in ("allow_wildcard", "allow_apex"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if not body:
        raise usage_error("nothing to change: give at least one option (see --help)")
    return body


def _policy(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.client.request("PATCH", f"/api/v1/agents/{quote(args.agent_id)}/policy", body=policy_body(args))
    return ctx.emit(response, _accepted("policy change", args.agent_id))


def _rename(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.client.post(f"/api/v1/agents/{quote(args.agent_id)}/rename", {"display_name": args.name})
    return ctx.emit(response, _accepted(f"rename to {args.name!r}", args.agent_id))


def _decommission(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.client.post(f"/api/v1/agents/{quote(args.agent_id)}/decommission")
    return ctx.emit(response, _accepted("decommissioning", args.agent_id))


def _remove(ctx: Context, args: argparse.Namespace) -> int:
    query: dict[str, str | None] = {"force": "true" if args.force else None}
    response = ctx.client.delete(f"/api/v1/agents/{quote(args.agent_id)}", query)
    return ctx.emit(response, _accepted("removal (its keys are revoked now)", args.agent_id))


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("agents", "Agents: one per Docker host, each with its own tunnel.")
    ls = action(actions, "ls", "list agents", _list, aliases=["list"])
    ls.add_argument("--status", choices=STATUSES, help="only agents with this status")
    show = action(actions, "show", "one agent with its keys, commands and heartbeats", _show)
    show.add_argument("agent_id")
    enroll = action(actions, "enroll", "enrol a pending agent: create or adopt its tunnel", _enroll, aliases=["enrol"])
    enroll.add_argument("agent_id")
    enroll.add_argument("--tunnel-name", help="create a tunnel with this name (default: flareport-<agent id>)")
    enroll.add_argument("--tunnel-id", help="adopt this existing tunnel instead")
    enroll.add_argument("--zone", action="append", default=[], help="zone the agent may publish in (repeatable)")
    enroll.add_argument("--suffix", action="append", default=[], help="hostname suffix it may publish (repeatable)")
    enroll.add_argument("--allow-wildcard", action="store_true", help="it may publish wildcard names (*.zone)")
    enroll.add_argument("--allow-apex", action="store_true", help="it may publish a zone's apex")
    enroll.add_argument(
        "--origin-allow", action="append", default=[], choices=ORIGIN_KINDS, help="origin kind it may use (repeatable)"
    )
    policy = action(actions, "policy", "change what an agent may publish (only the options given change)", _policy)
    policy.add_argument("agent_id")
    policy.add_argument("--zone", action="append", default=[], help="zone it may publish in (repeatable; replaces)")
    policy.add_argument("--no-zones", action="store_true", help="no zone restriction")
    policy.add_argument("--suffix", action="append", default=[], help="hostname suffix (repeatable; replaces)")
    policy.add_argument("--no-suffixes", action="store_true", help="no suffix restriction")
    policy.add_argument("--allow-wildcard", action=argparse.BooleanOptionalAction, help="wildcard names (*.zone)")
    policy.add_argument("--allow-apex", action=argparse.BooleanOptionalAction, help="a zone's apex")
    policy.add_argument(
        "--origin-allow", action="append", default=[], choices=ORIGIN_KINDS, help="origin kind (repeatable; replaces)"
    )
    policy.add_argument("--no-origin-allow", action="store_true", help="back to the default origin policy")
    rename = action(actions, "rename", "change an agent's display name", _rename)
    rename.add_argument("agent_id")
    rename.add_argument("name")
    decommission = action(actions, "decommission", "stop an agent's tunnel and remove its rules", _decommission)
    decommission.add_argument("agent_id")
    remove = action(actions, "rm", "remove an agent and revoke its keys", _remove, aliases=["remove"])
    remove.add_argument("agent_id")
    remove.add_argument("--force", action="store_true", help="even if the agent is still active")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
