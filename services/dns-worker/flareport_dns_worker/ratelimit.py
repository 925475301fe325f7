"""The Cloudflare rate limit, shared by every dns-worker replica through Redis.

Cloudflare allows ``N`` requests per window (1,200 per 5 minutes) per token and answers 429 past it. Every
call — read or write — first takes a token from one bucket in Redis, in a Lua script (``lua/take_token.lua``) so
that replicas never race; the script reads Redis' own clock (``TIME``), so replica clocks do not matter.

The bucket holds at most ``burst`` tokens and refills at ``(B - burst) / window`` per second, where the budget
``B`` is ``N`` less a 5% margin for timing jitter. In any span of one window that admits at most
``burst + (B - burst) = B < N`` calls, so even Cloudflare's fixed windows, which start wherever they like,
never see more than ``N``. A larger burst makes small jobs start at once; a
smaller one makes long bursts smoother; a tenth of the budget is the default.

A 429 (someone else spent the budget: another tool, the dashboard) sets ``pause-until`` for everyone: the
script refuses tokens until then, so all replicas stop together and resume after ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from flareport_dns_worker.scripts import PauseCalls, TakeToken


def default_burst(requests: int) -> int:
    return max(1, requests // 10)


class RateLimiter:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, requests: int, window_seconds: float, burst: int | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        # A token is taken a moment before Cloudflare counts the request, and those moments jitter: keep a
        # small margin (5%) so requests bunched by network or event-loop delays still fit the window.
        budget = max(1, requests - max(1, requests // 20)) if requests > 1 else 1
        self.burst = min(burst if burst is not None else default_burst(budget), budget)
        # Keep the refill strictly positive even when burst == budget (about one request per window then).
        self.refill_per_ms = max(budget - self.burst, 1) / (window_seconds * 1000)
        self._take = TakeToken(redis)
        self._pause = PauseCalls(redis)

    async def acquire(self) -> float:
        """Take one token, waiting as long as needed; returns the seconds waited."""
        started = time.monotonic()
        waited = False
        while True:
            wait = await self.try_acquire()
            if wait <= 0:
                break
            waited = True
            # Re-ask at least every 5 s: a pause can be lifted early only by expiring, but a long wait computed
            # now may shrink if the bucket's settings change with a redeploy.
            await asyncio.sleep(min(wait, 5.0))
        seconds = time.monotonic() - started
        if waited:
            RATE_LIMIT_WAITS.inc()
            RATE_LIMIT_WAIT_SECONDS.inc(seconds)
        return seconds

    async def try_acquire(self) -> float:
        """Take one token if there is one (returns 0), else return the seconds to wait before asking again."""
        wait_ms = await self._take(
            self._keys.cf_rate_bucket, self._keys.cf_pause_until, burst=self.burst, refill_per_ms=self.refill_per_ms
        )
        return wait_ms / 1000

    async def pause(self, seconds: float) -> None:
        """Stop every replica's calls for ``seconds`` (a 429's Retry-After)."""
        await self._pause(self._keys.cf_pause_until, pause_ms=max(1, int(seconds * 1000)))
