"""``flareport settings [--json]``: the API's effective configuration, secrets masked (``GET /api/v1/settings``).

Only the API's own settings: the other services read their environment in their own processes (the answer's
``others`` says where to look instead).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, run, single_parser


def _settings(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        print(f"Effective configuration of the {body['service']} (secrets masked):")
        render.table(("SETTING", "VALUE"), ([s["name"], s["value"]] for s in body["settings"]))
        print()
        print(body["others"])

    return ctx.emit(ctx.client.get("/api/v1/settings"), human)


def build_parser() -> argparse.ArgumentParser:
    return single_parser("settings", "Show the API's effective configuration, secrets masked.", _settings)


def main(argv: Sequence[str]) -> int:
    return run(build_parser(), argv)
