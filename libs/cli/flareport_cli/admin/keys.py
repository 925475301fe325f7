"""``flareport keys``: agent keys (create, list, show, revoke, roll).

A key is shown exactly once, by ``create``; the server keeps only its SHA-256. ``create`` therefore prints the
key with a ready-to-paste ``.env`` for the agent's host and the host's compose file (agent, socket proxy, network;
``flareport_common.onboarding``), and ``--json`` gives scripts the whole ``KeyCreated`` body. ``roll`` never
shows the new key: the control plane delivers it to the running agent.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run
from flareport_cli.admin.client import quote

HEADERS = ("KEY ID", "LABEL", "STATUS", "AGENT", "CREATED", "LAST USED")
COMPOSE_MARKER = "# ---- compose.yaml ----"


def key_row(info: dict[str, Any]) -> list[Any]:
    return [
        info["key_id"],
        info["label"],
        info["status"],
        info.get("agent_id"),
        render.when(info.get("created_at")),
        render.age(info.get("last_used_at")),
    ]


def _create(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        info = body["info"]
        print(f"Created key {info['key_id']} ({info['label']}). It is shown only now; store it safely:")
        print()
        print(f"  {body['key']}")
        print()
        print("The host's .env:")
        print(f"  FLAREPORT_MASTER_URL={ctx.client.url}")
        print(f"  FLAREPORT_API_KEY={body['key']}")
        print()
        print("The host's compose.yaml, next to that .env (it holds no secret):")
        print(COMPOSE_MARKER)
        print(body.get("compose") or "", end="")

    return ctx.emit(ctx.client.post("/api/v1/keys", {"label": args.label}), human)


def _list(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        render.table(HEADERS, (key_row(k) for k in sorted(body["keys"], key=lambda k: str(k["created_at"]))))

    return ctx.emit(ctx.client.get("/api/v1/keys"), human)


def show_key(info: dict[str, Any]) -> None:
    render.fields(
        [
            ("key id", info["key_id"]),
            ("label", info["label"]),
            ("status", info["status"]),
            ("agent", info.get("agent_id")),
            ("created", render.when(info.get("created_at"))),
            ("last used", render.when(info.get("last_used_at"))),
            ("revoked", render.when(info.get("revoked_at"))),
        ]
    )


def _show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get(f"/api/v1/keys/{quote(args.key_id)}"), show_key)


def _revoke(ctx: Context, args: argparse.Namespace) -> int:
    def human(info: dict[str, Any]) -> None:
        print(f"Revoked key {info['key_id']} ({info['label']}): refused from its next request on.")

    return ctx.emit(ctx.client.post(f"/api/v1/keys/{quote(args.key_id)}/revoke"), human)


def _roll(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        print(f"New key {body['new_key_id']} for agent {body['agent_id']} (intent {body['intent_id']}).")
        print("It is delivered to the agent; the old key is revoked when the agent acknowledges it.")

    return ctx.emit(ctx.client.post(f"/api/v1/keys/{quote(args.key_id)}/roll"), human)


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("keys", "Agent keys: an agent authenticates with one key bound to it.")
    create = action(actions, "create", "create a key (shown once) for a new agent", _create)
    create.add_argument("label", help="what the key is for, e.g. the host's name")
    action(actions, "ls", "list keys", _list, aliases=["list"])
    show = action(actions, "show", "one key", _show)
    show.add_argument("key_id")
    revoke = action(actions, "revoke", "revoke a key: the agent using it is refused from its next request", _revoke)
    revoke.add_argument("key_id")
    roll = action(actions, "roll", "replace an agent's key: the new key is delivered to the agent", _roll)
    roll.add_argument("key_id")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
