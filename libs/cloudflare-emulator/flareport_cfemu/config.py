"""Settings of one emulator instance, as a frozen dataclass passed down explicitly.

Limits that Cloudflare ties to the zone's plan (batch size, comment length, minimum TTL) are
derived from the plan by default, exactly as Cloudflare does; a non-``None`` override here
forces one value for every zone, which is what tests and benchmarks usually want.  The
runtime holds the current config and replaces it as a whole (``dataclasses.replace``) when a
test changes a limit through ``POST /__emulator/config`` or :meth:`Emulator.configure`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Per-plan limits published by Cloudflare (DNS record attributes and batch docs).
PLAN_BATCH_LIMIT = {"free": 200, "pro": 3500, "business": 3500, "enterprise": 3500}
PLAN_COMMENT_LIMIT = {"free": 100, "pro": 500, "business": 500, "enterprise": 500}
PLAN_MIN_TTL = {"free": 60, "pro": 60, "business": 60, "enterprise": 30}
# DNS record quota: Free zones created on or after 2024-09-01 hold at most 200 records (older Free zones and paid
# plans are not limited by the emulator: their quotas, 1,000 and up, are far above what tests write).
FREE_RECORD_QUOTA = 200
FREE_RECORD_QUOTA_SINCE = "2024-09-01"

# Fields a running emulator lets tests change.
TUNABLE_FIELDS = frozenset(
    {
        "rate_limit",
        "rate_window_seconds",
        "address_rate_limit",
        "batch_limit",
        "comment_limit",
        "max_record_tags",
        "record_quota",
        "connection_linger_seconds",
        "token",
    }
)


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """What one emulator enforces; every field has Cloudflare's default."""

    # Accepted bearer token; ``None`` accepts any non-empty token (each token has its own budget).
    token: str | None = None
    # Fixed-window budget per token: Cloudflare allows 1,200 requests per 5 minutes.
    rate_limit: int = 1200
    rate_window_seconds: float = 300.0
    # Requests per second from one client address: Cloudflare allows 200 (0: no such limit).
    address_rate_limit: int = 200
    # ``None`` = by zone plan (see PLAN_* above).
    batch_limit: int | None = None
    comment_limit: int | None = None
    max_record_tags: int = 10
    # Records a zone may hold, for every zone; ``None`` = by plan and zone age (``record_quota_for``). A create
    # beyond it is refused (81045), which is how tests get a refusal of a record whose name and body are valid.
    record_quota: int | None = None
    # How long a stopped connector's connections are still tracked (``is_pending_reconnect``); Cloudflare says
    # "several minutes". A tunnel refuses a delete without ``cascade`` while any connection is tracked.
    connection_linger_seconds: float = 300.0
    # JSON file the state is loaded from at start and written to (debounced) on change.
    state_file: Path | None = None
    persist_interval_seconds: float = 0.2
    # Bound on the request log (counters are never truncated).
    request_log_size: int = 100_000
    # Seed of the random generator used by probabilistic faults, for reproducible runs.
    fault_seed: int = 0

    def batch_limit_for(self, plan: str) -> int:
        return self.batch_limit if self.batch_limit is not None else PLAN_BATCH_LIMIT.get(plan, 200)

    def comment_limit_for(self, plan: str) -> int:
        return self.comment_limit if self.comment_limit is not None else PLAN_COMMENT_LIMIT.get(plan, 100)

    def record_quota_for(self, plan: str, created_on: str) -> int | None:
        """Records a zone may hold: the override, else 200 for a Free zone created since September 2024."""
        if self.record_quota is not None:
            return self.record_quota
        if plan == "free" and created_on[:10] >= FREE_RECORD_QUOTA_SINCE:
            return FREE_RECORD_QUOTA
        return None

    def min_ttl_for(self, plan: str) -> int:
        return PLAN_MIN_TTL.get(plan, 60)

    def public(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state_file"] = str(self.state_file) if self.state_file else None
        data["token"] = "<set>" if self.token else None
        return data
