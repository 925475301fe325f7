"""Cloudflare's ``Ratelimit`` response header, read. Pure.

Cloudflare answers every API request with ``Ratelimit: "default";r=50;t=30`` (the IETF draft's format): for each
limit, the requests left (``r``) and the seconds until its window resets (``t``). Its budget is counted per user,
cumulatively over the dashboard, every API token and every tool using them
(developers.cloudflare.com/fundamentals/api/reference/limits), so the header is the only view of what others
spent. The dns-worker's own limiter (``ratelimit``) counts only its calls; ``take_token.lua`` also keeps to this
view (see ``observe_standing.lua``).

Several items are read as several limits, and the one with the fewest requests left decides. A header that cannot
be read is ignored (as if absent): the worker's own limit still holds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Standing:
    """Requests left in Cloudflare's window and the seconds until it resets, as one answer reported them."""

    remaining: int
    reset_seconds: int


def _item(text: str) -> Standing | None:
    name, *params = (part.strip() for part in text.split(";"))
    if not name:
        return None
    values: dict[str, int] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if sep and value.strip().isdigit():
            values[key.strip().lower()] = int(value.strip())
    if "r" not in values or "t" not in values:
        return None
    return Standing(values["r"], values["t"])


def parse_ratelimit(value: str | None) -> Standing | None:
    """The most constraining item of a ``Ratelimit`` header (fewest left; of those, the latest reset), or None."""
    if not value or len(value) > 1_000:  # a header this long is not Cloudflare's
        return None
    items = [s for s in (_item(part) for part in value.split(",")) if s is not None]
    if not items:
        return None
    return min(items, key=lambda s: (s.remaining, -s.reset_seconds))
