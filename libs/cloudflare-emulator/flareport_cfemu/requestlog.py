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
from dataclasses import asdict, dataclass
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
        entries = list(self.entries) if limit is None else list(self.entries)[-limit:]
        return {
            "total": self.total,
            "counters": dict(self.counters),
            "status_counters": dict(self.status_counters),
            "requests": [asdict(e) for e in entries],
        }
