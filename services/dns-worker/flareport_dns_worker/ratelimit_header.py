"""Cloudflare's ``Ratelimit`` response header, read. Pure.

Cloudflare answers every API request with ``Ratelimit: "default";r=50;t=30`` (the IETF draft's format): for each
limit, the requests left (``r``) and the seconds until its window resets (``t``). Its budget is counted per user,
cumulatively over the dashboard, every API token and every tool using them
(developers.cloudflare.com/fundamentals/api/reference/limits), so the header is the only view of what others
spent. The dns-worker's own limiter (``ratelimit``) counts only its calls; ``take_token.lua`` also keeps to this
view (``end_call.lua`` records it).

Several items are read as several limits, and the one with the fewest requests left decides. ``Ratelimit-Policy``
(``"default";q=1200;w=300``) gives each limit's quota, by the same name: the reserve the worker leaves to others is
a share of that limit's quota, not of its own configured one. A header that cannot be read is ignored (as if
absent): the worker's own limit still holds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Standing:
    """Requests left in Cloudflare's window and the seconds until it resets, as one answer reported them."""

    remaining: int
    reset_seconds: int
    quota: int | None = None  # the limit's quota (``Ratelimit-Policy``), when Cloudflare gave it


def _items(value: str | None) -> list[tuple[str, dict[str, int]]]:
    """A structured-field list's items: (name, integer parameters); items without a name are left out."""
    if not value or len(value) > 1_000:  # a header this long is not Cloudflare's
        return []
    found = []
    for text in value.split(","):
        name, *params = (part.strip() for part in text.split(";"))
        if not name:
            continue
        values: dict[str, int] = {}
        for param in params:
            key, sep, number = param.partition("=")
            if sep and number.strip().isdigit():
                values[key.strip().lower()] = int(number.strip())
        found.append((name, values))
    return found


def parse_ratelimit(value: str | None, policy: str | None = None) -> Standing | None:
    """The most constraining item of a ``Ratelimit`` header (fewest left; of those, the latest reset) with its
    quota from ``Ratelimit-Policy``, or None."""
    quotas = {name: v["q"] for name, v in _items(policy) if v.get("q")}
    standings = [Standing(v["r"], v["t"], quotas.get(name)) for name, v in _items(value) if "r" in v and "t" in v]
    if not standings:
        return None
    return min(standings, key=lambda s: (s.remaining, -s.reset_seconds))
