"""When a tunnel's cached configuration may stand in for a GET before a PUT, and how a PUT shows it should not have.

A PUT of a tunnel configuration replaces the whole ingress, so the worker plans it against the live configuration:
a rule someone added in the dashboard since our copy would otherwise be dropped. That costs a GET before every
PUT. This module lets a burst of changes to one tunnel share one GET.

Trust window: for ``window_seconds`` (``CLOUDFLARE_TUNNEL_CONFIG_TRUST_SECONDS``; 0, the default, turns it off)
after a real GET, the cached copy is used instead of another GET. The window starts at the GET and our own PUTs
do not renew it, so a dashboard edit is seen at the latest one window after our last read. Time is the worker's
clock; a read time in the future (a replica whose clock runs ahead, or a clock set back) or one that cannot be
parsed is not trusted, since the copy's age is then unknown.

This is an assumption with a bounded cost, not a guarantee — and the GET never was one either: Cloudflare's PUT
has no precondition, so an edit landing between a GET and its PUT (a round trip, longer when the PUT waits for
the rate limit) has always been overwritten. The window widens that gap to at most ``window_seconds`` after our
last read (plus the clock difference between replicas, when another replica read). An edit made elsewhere in it is
lost, which is why the window is off unless an operator turns it on.

Tripwire: Cloudflare increments the configuration's ``version`` on every accepted PUT. A PUT planned from a copy
of known version ``v`` (trusted, or just read) must answer ``v + 1``; any other version means someone else wrote
in between and our PUT replaced what they wrote. Their edit cannot be put back — no earlier configuration can be
read from Cloudflare, and a GET now returns our own PUT — so the worker makes it seen instead: a warning
``tunnels.config_changed_elsewhere`` with both versions, ``flareport_dnsworker_tunnel_config_changed_elsewhere_total``
(a counter to alert on), and the copy is no longer trusted: the tunnel's next sync reads first, and only that read
opens a new window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from flareport_dns_worker.metrics import CONFIG_CHANGED_ELSEWHERE

# Fields of a tunnel's observed hash: when (epoch milliseconds, the worker's clock) its cached configuration was
# last read from Cloudflare — our PUTs leave it as it is — and the Cloudflare ``version`` of that copy.
READ_AT = "read_at"
VERSION = "version"
log = structlog.get_logger("flareport.dns_worker.tunnels")


def trusted_version(observed: Mapping[Any, Any], *, now: float, window_seconds: float) -> int | None:
    """The Cloudflare version of a tunnel's cached configuration while that copy may stand in for a GET, else
    None: with a window of 0, without a parseable read time and version, with a read time after ``now``, or a
    read ``window_seconds`` or longer ago."""
    if window_seconds <= 0:
        return None
    try:
        read_at = int(observed[READ_AT.encode()]) / 1000
        version = int(observed[VERSION.encode()])
    except (KeyError, TypeError, ValueError):
        return None
    return version if 0 <= now - read_at < window_seconds else None


def config_version(raw: Any) -> int | None:
    """The configuration version in Cloudflare's answer: an integer (not a bool), else None — and without one the
    copy is never trusted, since the tripwire could not work."""
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


def changed_elsewhere(tunnel_id: str, base: int, version: int, *, trusted: bool) -> None:
    """Our PUT, planned from version ``base``, answered ``version`` (not ``base + 1``): it replaced a configuration
    someone else wrote after our copy. Nothing can bring that back, so an operator must hear of it."""
    CONFIG_CHANGED_ELSEWHERE.inc()
    log.warning(
        "tunnels.config_changed_elsewhere",
        tunnel_id=tunnel_id,
        planned_from_version=base,
        expected_version=base + 1,
        answered_version=version,
        from_trusted_copy=trusted,
        hint="another writer (the dashboard, another tool) changed this tunnel's ingress just before Flareport's "
        "PUT replaced it; re-apply that change if it is still wanted",
    )
