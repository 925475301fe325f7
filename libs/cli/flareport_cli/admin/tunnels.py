"""``flareport tunnels``: the account's tunnels with their connectors, and restart or redeploy of their cloudflared.

The list is what the dns-worker last read from Cloudflare (the API never calls Cloudflare): the output says how old
it is, and ``refresh`` has it listed again now. Restart and redeploy are offered only for tunnels Flareport created
and an agent runs; the API refuses the others with the reason. They write intents: the command answers once the
API accepted one, and the agent's command history (``flareport agents show``) shows the outcome.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run
from flareport_cli.admin.client import quote

HEADERS = ("TUNNEL ID", "NAME", "STATUS", "CONNECTORS", "AGENT", "CREATED BY FLAREPORT", "ACTIONS")


def freshness(body: dict[str, Any]) -> str:
    """How old the listing is, and why it is stale when the last attempt failed."""
    checked = body.get("checked_at")
    said = f"Listed from Cloudflare {render.age(checked)}" if checked else "Not listed from Cloudflare yet"
    if body.get("error"):
        said += f"; the last listing failed {render.age(body.get('failed_at'))}: {body['error']}"
    return said


def agent_label(tunnel: dict[str, Any]) -> str | None:
    if not tunnel.get("agent_id"):
        return None
    return f"{tunnel['agent_name']} ({tunnel['agent_id']})" if tunnel.get("agent_name") else tunnel["agent_id"]


def tunnel_row(tunnel: dict[str, Any]) -> list[Any]:
    return [
        tunnel["id"],
        tunnel["name"],
        tunnel["status"],
        len(tunnel.get("connectors") or ()),
        agent_label(tunnel),
        "yes" if tunnel.get("created_by_flareport") else "no",
        ", ".join(tunnel.get("actions") or ()) or "none",
    ]


def _list(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        render.table(HEADERS, (tunnel_row(t) for t in body["tunnels"]))
        print(f"\n{freshness(body)}.")

    return ctx.emit(ctx.client.get("/api/v1/tunnels"), human)


def show_tunnel(body: dict[str, Any]) -> None:
    tunnel = body["tunnel"]
    render.fields(
        [
            ("tunnel id", tunnel["id"]),
            ("name", tunnel["name"]),
            ("status", tunnel["status"]),
            ("created", render.when(tunnel.get("created_at"))),
            ("created by Flareport", "yes" if tunnel.get("created_by_flareport") else "no"),
            ("agent", agent_label(tunnel)),
            ("agent's image", tunnel.get("agent_image")),
            ("actions", ", ".join(tunnel.get("actions") or ()) or f"none ({tunnel.get('actions_note')})"),
        ]
    )
    print("\nConnectors")
    render.table(
        ("CONNECTOR ID", "VERSION", "ORIGIN IP", "SINCE", "CONNECTIONS", "COLOS", "STATE"),
        (
            [
                c["id"],
                c.get("version"),
                c.get("origin_ip"),
                f"{render.when(c.get('opened_at'))} ({render.age(c.get('opened_at'))})",
                c.get("connections"),
                " ".join(c.get("colos") or ()),
                "reconnecting" if c.get("pending_reconnect") else "connected",
            ]
            for c in tunnel.get("connectors") or ()
        ),
    )
    print(f"\n{freshness(body)}.")


def _show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get(f"/api/v1/tunnels/{quote(args.tunnel_id)}"), show_tunnel)


def _accepted(what: str) -> Any:
    def human(body: dict[str, Any]) -> None:
        print(f"{what} requested (intent {body['intent_id']}); the reconciler sends it on.")

    return human


def _refresh(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.post("/api/v1/tunnels/refresh"), _accepted("A new listing of the tunnels"))


def _restart(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.client.post(f"/api/v1/tunnels/{quote(args.tunnel_id)}/restart")
    return ctx.emit(response, _accepted(f"Restart of the cloudflared of tunnel {args.tunnel_id}"))


def _redeploy(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {} if args.image is None else {"image": args.image}
    response = ctx.client.post(f"/api/v1/tunnels/{quote(args.tunnel_id)}/redeploy", body)
    return ctx.emit(response, _accepted(f"Redeploy of the cloudflared of tunnel {args.tunnel_id}"))


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("tunnels", "The account's tunnels, their connectors, and their cloudflared.")
    action(actions, "ls", "list the account's tunnels (as last read from Cloudflare)", _list, aliases=["list"])
    show = action(actions, "show", "one tunnel with its connectors (version, origin IP, since when)", _show)
    show.add_argument("tunnel_id")
    action(actions, "refresh", "have the tunnels listed from Cloudflare again now", _refresh)
    restart = action(actions, "restart", "restart the cloudflared of a tunnel Flareport created", _restart)
    restart.add_argument("tunnel_id")
    redeploy = action(actions, "redeploy", "recreate the cloudflared of a tunnel Flareport created", _redeploy)
    redeploy.add_argument("tunnel_id")
    redeploy.add_argument("--image", help="the image to run: must be the agent's own CLOUDFLARED_IMAGE")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
