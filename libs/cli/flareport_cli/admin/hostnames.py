"""``flareport hostnames``: settle who may publish a contested hostname.

"First claim wins" decides between agents by itself. When it decides wrongly (the rightful host came second, or a
service moved to another host), ``assign`` gives the hostname to one agent or tunnel: every other claim of it is
then denied, whatever its claim time. ``unassign`` returns it to first claim wins. Both write intents, so the
output says "requested"; ``flareport rules show HOSTNAME`` shows the outcome.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin.base import Context, action, group_parser, run
from flareport_cli.admin.client import quote


def _requested(what: str) -> Any:
    def human(body: dict[str, Any]) -> None:
        print(f"{what} requested (intent {body['intent_id']}); the reconciler applies it.")

    return human


def _assign(ctx: Context, args: argparse.Namespace) -> int:
    body = {"agent_id": args.agent} if args.agent else {"tunnel_id": args.tunnel}
    owner = f"agent {args.agent}" if args.agent else f"tunnel {args.tunnel}"
    response = ctx.client.put(f"/api/v1/hostnames/{quote(args.hostname)}/owner", body)
    return ctx.emit(response, _requested(f"Hostname {args.hostname}: assignment to {owner}"))


def _unassign(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.client.delete(f"/api/v1/hostnames/{quote(args.hostname)}/owner")
    return ctx.emit(response, _requested(f"Hostname {args.hostname}: lifting its assignment"))


def build_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("hostnames", "Settle who may publish a contested hostname.")
    assign = action(actions, "assign", "only this agent (or tunnel) may publish the hostname", _assign)
    assign.add_argument("hostname")
    owner = assign.add_mutually_exclusive_group(required=True)
    owner.add_argument("--agent", help="the agent whose tunnel serves it")
    owner.add_argument("--tunnel", help="an explicit tunnel id")
    unassign = action(actions, "unassign", "lift the assignment: first claim wins again", _unassign)
    unassign.add_argument("hostname")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
