"""The log of API requests and exact per-endpoint counters.

Benchmarks count Cloudflare calls per endpoint from here, so the counters must be exact and
cheap: one ``Counter`` increment per request, keyed by ``"METHOD /path/{template}"`` (the
route's canonical path without ``/client/v4``, e.g. ``"POST /zones/{zone_id}/dns_records/batch"``)
and never truncated.  The detailed entries are kept in a bounded deque so a long benchmark does
not grow memory without limit.  Only ``/client/v4`` requests are logged; control calls are not.
A dropped connection is logged with status 0.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, fields
from typing import Any

UNMATCHED = "<unmatched>"


@dataclass(frozen=True, slots=True)
class RequestEntry:
    method: str
    path: str
    endpoint: str
    status: int
    timestamp: str
    duration_ms: float
    fault: str | None


_ENTRY_FIELDS = tuple(f.name for f in fields(RequestEntry))


class RequestLog:
    def __init__(self, max_entries: int) -> None:
        self.entries: deque[RequestEntry] = deque(maxlen=max_entries)
        self.counters: Counter[str] = Counter()
        self.status_counters: Counter[str] = Counter()
        self.total = 0

    def record(self, entry: RequestEntry) -> None:
        self.entries.append(entry)
        self.counters[entry.endpoint] += 1
        self.status_counters[f"{entry.endpoint} {entry.status}"] += 1
        self.total += 1

    def count(self, endpoint: str) -> int:
        """Requests seen for ``"METHOD /template"`` since the last clear."""
        return self.counters[endpoint]

    def clear(self) -> None:
        self.entries.clear()
        self.counters.clear()
        self.status_counters.clear()
        self.total = 0

    def snapshot(self, *, limit: int | None = None) -> dict[str, Any]:
        """Counters and the last ``limit`` entries (all when ``None``, none when 0 - a read of the counters only)."""
        entries = list(self.entries)
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []  # [-0:] would be every entry
        return {
            "total": self.total,
            "counters": dict(self.counters),
            "status_counters": dict(self.status_counters),
            "requests": [_entry_json(e) for e in entries],
        }


def _entry_json(entry: RequestEntry) -> dict[str, Any]:
    # dataclasses.asdict's recursive deep copy, without its cost: every field is a scalar.
    return {name: getattr(entry, name) for name in _ENTRY_FIELDS}
