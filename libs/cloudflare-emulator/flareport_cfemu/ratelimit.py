"""Cloudflare's API rate limit: a fixed budget per token per window.

Cloudflare allows 1,200 requests per five minutes per user/account token; past the budget
"all API calls for the next five minutes will be blocked" with HTTP 429 and error 971.  The
emulator keeps one fixed window per token, started by the token's first request: requests
beyond ``limit`` inside the window are refused with ``Retry-After`` set to the seconds left
(rounded up, at least 1).  Refused requests do not extend the window.  The clock is
injectable so that unit tests can move time without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    count: int


class RateLimiter:
    """Fixed-window request counter keyed by token."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def hit(self, token: str, *, limit: int, window_seconds: float) -> int | None:
        """Count one request; ``None`` if allowed, else the Retry-After value in seconds."""
        now = self._clock()
        window = self._windows.get(token)
        if window is None or now >= window.started + window_seconds:
            window = self._windows[token] = _Window(started=now, count=0)
        window.count += 1
        if window.count <= limit:
            return None
        return max(1, math.ceil(window.started + window_seconds - now))

    def usage(self, token: str) -> int:
        window = self._windows.get(token)
        return window.count if window else 0

    def reset(self) -> None:
        self._windows.clear()
