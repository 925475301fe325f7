"""``flareport status``, ``flareport reconcile`` and ``flareport dlq``: operating the control plane.

``status`` shows every stream with its consumer groups (pending = delivered, not acknowledged; lag = not yet
delivered), agent and rule counts, and the dns-worker's shared Cloudflare rate limit. ``reconcile`` asks the
reconciler to recompute (and with verification, re-read Cloudflare) for everything or one scope. ``dlq`` lists
the messages the services gave up on and puts them back on their stream once the cause is fixed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flareport_cli.admin import render
from flareport_cli.admin.base import Context, action, group_parser, run, single_parser
from flareport_cli.admin.client import EXIT_OK, quote

STREAM_HEADERS = ("STREAM", "LENGTH", "GROUP", "CONSUMERS", "PENDING", "LAG")
DLQ_HEADERS = ("ENTRY ID", "SOURCE STREAM", "GROUP", "REASON", "DELIVERIES", "AT", "ERROR")


def stream_rows(streams: list[dict[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for stream in streams:
        groups = stream.get("groups") or [{}]
        for index, group in enumerate(groups):
            rows.append(
                [
                    stream["stream"] if index == 0 else "",
                    stream["length"] if index == 0 else "",
                    group.get("name"),
                    group.get("consumers"),
                    group.get("pending"),
                    group.get("lag"),
                ]
            )
    return rows


def _standing(body: dict[str, Any]) -> str | None:
    """Cloudflare's own count of the account's budget (the dashboard and other tools included), when current."""
    left = body.get("cloudflare_left")
    if left is None:
        return None
    resets = render.when(body.get("cloudflare_resets_at"))
    return f"{left} calls left until {resets} (Cloudflare's count, all consumers of the account)"


def show_status(body: dict[str, Any]) -> None:
    tokens = body.get("cloudflare_tokens")
    paused = body.get("cloudflare_paused_until")
    cloudflare = (
        "no rate limit data yet"
        if tokens is None
        else f"{tokens:.1f} tokens at {render.when(body.get('cloudflare_tokens_at'))}"
    )
    render.fields(
        [
            ("agents", body["agents"]),
            ("rules", body["rules"]),
            ("cloudflare", cloudflare),
            ("paused until", f"{render.when(paused)} (after a 429)" if paused else None),
            ("cf budget", _standing(body)),
            ("server time", render.when(body.get("server_time"))),
        ]
    )
    print()
    render.table(STREAM_HEADERS, stream_rows(body["streams"]))


def _status(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.get("/api/v1/status"), show_status)


def _reconcile(ctx: Context, args: argparse.Namespace) -> int:
    def human(body: dict[str, Any]) -> None:
        verify = "with" if args.verify else "without"
        print(f"Reconcile of {args.scope} requested {verify} verification (intent {body['intent_id']}).")

    return ctx.emit(ctx.client.post("/api/v1/reconcile", {"scope": args.scope, "verify": args.verify}), human)


def letter_row(letter: dict[str, Any]) -> list[Any]:
    error = str(letter.get("error") or "")
    return [letter["entry_id"], letter["source_stream"], letter.get("group"), letter.get("reason"),
            letter.get("deliveries"), render.when(letter.get("occurred_at")), error[:80]]  # fmt: skip


def _dlq_list(ctx: Context, args: argparse.Namespace) -> int:
    query = {"count": str(args.count), "after": args.after}

    def human(body: dict[str, Any]) -> None:
        render.table(DLQ_HEADERS, (letter_row(d) for d in body["dead_letters"]))
        if body.get("next_after"):
            print(f"(more: flareport dlq ls --after {body['next_after']})")

    return ctx.emit(ctx.client.get("/api/v1/dead-letters", query), human)


def _dlq_replay(ctx: Context, args: argparse.Namespace) -> int:
    """Replays each entry in turn; stops at the first failure so the output says exactly what was replayed."""
    for entry_id in args.entry_ids:
        response = ctx.client.post(f"/api/v1/dead-letters/{quote(entry_id)}/replay")

        def human(body: dict[str, Any], entry_id: str = entry_id) -> None:
            print(f"Replayed {entry_id} onto {body['source_stream']} as {body['new_id']}.")

        ctx.emit(response, human)
    return EXIT_OK


def build_status_parser() -> argparse.ArgumentParser:
    return single_parser("status", "Streams, consumer groups, lag, counts and the Cloudflare rate limit.", _status)


def build_reconcile_parser() -> argparse.ArgumentParser:
    parser = single_parser("reconcile", "Ask the reconciler to recompute desired state and re-apply it.", _reconcile)
    parser.add_argument("--scope", default="all", help="'all' (default) or kind:name, e.g. zone:example.com")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip re-reading Cloudflare")
    return parser


def build_dlq_parser() -> argparse.ArgumentParser:
    parser, actions = group_parser("dlq", "Dead letters: messages the services gave up on.")
    ls = action(actions, "ls", "list dead letters (oldest first)", _dlq_list, aliases=["list"])
    ls.add_argument("--count", type=int, default=100, help="at most this many (1-1000, default 100)")
    ls.add_argument("--after", help="continue after this entry id (as printed by the previous page)")
    replay = action(actions, "replay", "put dead letters back on their source stream", _dlq_replay)
    replay.add_argument("entry_ids", nargs="+", metavar="ENTRY_ID")
    return parser


def status_main(argv: Sequence[str]) -> int:
    return run(build_status_parser(), argv)


def reconcile_main(argv: Sequence[str]) -> int:
    return run(build_reconcile_parser(), argv)


def dlq_main(argv: Sequence[str]) -> int:
    return run(build_dlq_parser(), argv)
