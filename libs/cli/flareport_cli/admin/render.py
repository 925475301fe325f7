"""Rendering for humans: aligned tables, key/value blocks and short times.

Tables are plain text (no colours, no box drawing) so they survive pipes, ``grep`` and ``less``; columns are as
wide as their widest cell, the last column is never padded, and a missing value is shown as ``-``. Times are the
API's ISO 8601 strings shortened to ``YYYY-MM-DD HH:MM:SS`` UTC, with the age when it matters (``last seen``).
Scripts should use ``--json`` instead, which prints the API's JSON untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

MISSING = "-"


def cell(value: Any) -> str:
    if value is None or value == "" or value == [] or value == ():
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    return str(value).replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print ``rows`` under ``headers``, or a single "(none)" line when there are no rows."""
    stream = out or sys.stdout
    text = [[cell(v) for v in row] for row in rows]
    if not text:
        print("(none)", file=stream)
        return
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    for line in [list(headers), *text]:
        padded = [v.ljust(w) for v, w in zip(line[:-1], widths[:-1], strict=True)] + [line[-1]]
        print("  ".join(padded).rstrip(), file=stream)


def fields(pairs: Iterable[tuple[str, Any]], out: TextIO | None = None) -> None:
    """Print ``name: value`` lines with the values aligned."""
    stream = out or sys.stdout
    items = [(name, cell(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0) + 1
    for name, value in items:
        print(f"{(name + ':').ljust(width)} {value}", file=stream)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """An API timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC (the raw value if it is not a timestamp)."""
    parsed = parse_time(value)
    if parsed is None:
        return cell(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(value: Any, now: datetime | None = None) -> str:
    """How long ago ``value`` was, as ``5s``, ``3m``, ``2h``, ``4d`` (``-`` for never)."""
    parsed = parse_time(value)
    if parsed is None:
        return MISSING
    seconds = int(((now or datetime.now(UTC)) - parsed).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
