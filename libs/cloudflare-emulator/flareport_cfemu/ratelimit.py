"""Cloudflare's API rate limits: a fixed budget per token per window, and requests per second per address.

Cloudflare allows 1,200 requests per five minutes per user/account token; past the budget
"all API calls for the next five minutes will be blocked" with HTTP 429 and error 971.  The
emulator keeps one fixed window per token, started by the token's first request. The first request beyond
``limit`` blocks the token for a whole window from that moment (the strict reading of "the next five minutes":
a block that ends with the window that was overrun would be the lenient one): every request until then is
refused with ``Retry-After`` set to the seconds left (rounded up, at least 1), and the next request after it
starts a new window.  The clock is injectable so that unit tests can move time without sleeping.

Every answer to an authenticated request carries the token's standing as Cloudflare's headers do
(developers.cloudflare.com/fundamentals/api/reference/limits): ``Ratelimit: "default";r=<left>;t=<seconds to the
reset>`` and ``Ratelimit-Policy: "default";q=<limit>;w=<window seconds>``. The policy name and that one item is
all Cloudflare sends for this limit are assumptions; the format is the IETF draft's that Cloudflare cites.

Cloudflare also allows at most 200 requests per second from one IP address ("Client API per IP: 200/second").
How it counts them is not documented; the emulator takes the strictest reading: at most ``limit`` requests from
one address in *any* span of one second (a sliding span, not fixed windows), the refused ones not counted, and a
refusal answered like the token's (429, code 971, ``Retry-After: 1``). An assumption, as the code and message are.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    count: int
    blocked_until: float | None = None  # set by the first request over the limit

    def ends(self, window_seconds: float) -> float:
        return self.blocked_until if self.blocked_until is not None else self.started + window_seconds


class RateLimiter:
    """Fixed-window request counter keyed by token."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def hit(self, token: str, *, limit: int, window_seconds: float) -> int | None:
        """Count one request; ``None`` if allowed, else the Retry-After value in seconds."""
        now = self._clock()
        window = self._current(token, now, window_seconds)
        if window is None:
            window = self._windows[token] = _Window(started=now, count=0)
        window.count += 1
        if window.count <= limit:
            return None
        if window.blocked_until is None:
            window.blocked_until = now + window_seconds
        return max(1, math.ceil(window.blocked_until - now))

    def remaining(self, token: str, *, limit: int, window_seconds: float) -> tuple[int, int]:
        """What the ``Ratelimit`` header reports for ``token``: requests left in its window and the whole seconds
        until the window resets (a token without a window has all of a window ahead of it)."""
        now = self._clock()
        window = self._current(token, now, window_seconds)
        if window is None:
            return limit, max(1, math.ceil(window_seconds))
        return max(0, limit - window.count), max(1, math.ceil(window.ends(window_seconds) - now))

    def _current(self, token: str, now: float, window_seconds: float) -> _Window | None:
        """The token's window (or block) in force at ``now``; None when the next request starts a new one."""
        window = self._windows.get(token)
        return None if window is None or now >= window.ends(window_seconds) else window

    def usage(self, token: str) -> int:
        window = self._windows.get(token)
        return window.count if window else 0

    def reset(self) -> None:
        self._windows.clear()


class AddressLimiter:
    """Requests per address in any one-second span."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}

    def hit(self, address: str, *, limit: int) -> int | None:
        """Count one request from ``address``; ``None`` if allowed, else the Retry-After value in seconds."""
        now = self._clock()
        recent = self._recent.setdefault(address, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= limit:
            return 1
        recent.append(now)
        return None

    def reset(self) -> None:
        self._recent.clear()
