"""``flareport audit``: the admin actions the API recorded, newest first, with who asked (``api`` for the master
key, ``ui:<user>`` for the web UI) and when: for now a rule's forced deletion."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, run, single_parser

HEADERS = ("WHEN", "WHO", "ACTION", "TARGET", "INTENT")


def _list(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        rows = ([render.when(e["at"]), e["actor"], e["action"], e["target"], e["intent_id"]] for e in body["entries"])
        render.table(HEADERS, rows)

    return ctx.emit(ctx.client.get("/api/v1/audit", {"count": str(args.count)}), human)


def build_parser() -> argparse.ArgumentParser:
    parser = single_parser("audit", "Recent admin actions: who asked for what, and when.", _list)
    parser.add_argument("--count", "-n", type=int, default=50, help="how many, newest first (1-1000; default 50)")
    return parser


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
