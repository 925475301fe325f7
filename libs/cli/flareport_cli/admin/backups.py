"""``flareport backup [FILE]`` and ``flareport restore FILE [--apply]``: the admin's state as one JSON document.

``backup`` writes what ``GET /api/v1/backup`` answers (to FILE, created 0600, or to stdout); the document holds
no secret, and its ``redo`` list says what a restored deployment needs again (new agent keys). ``restore`` sends
a file to ``POST /api/v1/restore``: the API checks the whole document first (a refusal names the field and
nothing is written) and reports each object as ``create``, ``unchanged``, ``conflict`` or ``missing`` (an agent
not registered here); only ``--apply`` writes. Exit codes: 0 done, 1 a conflict or an API error, 2 a file that
cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flareport_cli.admin import report
from flareport_cli.admin.base import Context, run, single_parser, usage_error
from flareport_cli.admin.client import EXIT_API, EXIT_OK

SECTIONS = ("manual_rules", "access_groups", "agents")


def _write_private(path: Path, data: bytes) -> None:
    """Create or replace ``path`` readable by its owner only: the admin's state is nobody else's business."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def _backup(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.client.get("/api/v1/backup")
    if args.file is None:
        sys.stdout.write(response.body.decode() + "\n")
        return EXIT_OK
    try:
        _write_private(Path(args.file), response.body)
    except OSError as exc:
        raise usage_error(f"cannot write {args.file}: {exc.strerror or exc}") from None
    document = response.json()
    counts = {section: len(document.get(section, [])) for section in SECTIONS}
    if ctx.as_json:
        sys.stdout.write(json.dumps({"file": args.file, **counts}) + "\n")
        return EXIT_OK
    print(f"Backup written to {args.file}: " + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items()))
    print("Not in the file (redo after a restore):")
    for line in document.get("redo", []):
        print(f"  - {line}")
    return EXIT_OK


def _load(path: str) -> Any:
    try:
        return json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise usage_error(f"{path} is not a JSON document ({exc}); nothing was restored") from None


def _restore(ctx: Context, args: argparse.Namespace) -> int:
    document = _load(args.file)
    query: dict[str, str | None] = {"apply": "true" if args.apply else "false"}
    response = ctx.client.request("POST", "/api/v1/restore", body=document, query=query)
    body = response.json()
    if ctx.as_json:
        sys.stdout.write(response.body.decode() + "\n")
    else:
        applied = bool(body["applied"])
        print(f"Restore of {args.file} (backup of {body['source_prefix']} at {body['created_at']}, "
              f"{'applied' if applied else 'dry run'})")  # fmt: skip
        report.objects(body["objects"], applied=applied)
        report.counts(body["summary"], applied=applied)
        for line in body.get("redo", []):
            print(f"  {'redo':<13} {line}")
    return EXIT_API if body["summary"].get("conflict") else EXIT_OK


def build_backup_parser() -> argparse.ArgumentParser:
    parser = single_parser(
        "backup",
        "Write the admin's state (manual rules, access groups, agents' names, enrolments and policies) as one JSON "
        "document, without any secret.",
        _backup,
    )
    parser.add_argument("file", nargs="?", help="where to write it (created 0600; default: stdout)")
    return parser


def build_restore_parser() -> argparse.ArgumentParser:
    parser = single_parser(
        "restore",
        "Restore a backup written by `flareport backup`: a dry run unless --apply; existing objects are never "
        "changed (a differing one is reported as a conflict).",
        _restore,
    )
    parser.add_argument("file", help="a backup written by flareport backup")
    parser.add_argument("--apply", action="store_true", help="create what is missing (default: dry run)")
    return parser


def backup_main(argv: Sequence[str]) -> int:
    return run(build_backup_parser(), argv)


def restore_main(argv: Sequence[str]) -> int:
    return run(build_restore_parser(), argv)
