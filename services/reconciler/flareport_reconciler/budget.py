"""How low the shared Cloudflare rate budget runs, as the coalescing window's ``pressure`` (``coalesce``, "The
window"): 1 while at least half of it is left, 2 below a half, 4 below a fifth or while Cloudflare paused everyone
(a 429). Every host of an account shares the budget, so when it runs low each job should carry more changes.

The dns-worker's rate limiter leaves its view in ``Keys.cf_rate_bucket`` (calls that may start now, the budget)
and a 429's pause in ``Keys.cf_pause_until``. Reading them costs a round trip, so it is made in the background,
at most once a second: the window only needs the trend. A view that is missing (no call within the span) means
the whole budget is left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from flareport_common.keys import Keys
from flareport_common.replies import text

log = structlog.get_logger("flareport.reconciler.budget")

CALM, LOW, SCARCE = 1, 2, 4
CACHE_SECONDS = 1.0


def pressure_of(tokens: float | None, budget: float | None, paused_until_ms: float | None, now_ms: float) -> int:
    """The window's factor for a budget reading (pure: ``Budget`` does the reading)."""
    if paused_until_ms is not None and paused_until_ms > now_ms:
        return SCARCE
    if tokens is None or budget is None or budget <= 0:
        return CALM
    left = tokens / budget
    if left >= 0.5:
        return CALM
    return LOW if left >= 0.2 else SCARCE


def _number(raw: object) -> float | None:
    if raw is None:
        return None
    try:
        return float(text(raw))
    except (ValueError, UnicodeDecodeError):
        return None


class Budget:
    """The last reading, refreshed in the background at most once a second: ``pressure`` never waits for Redis, so
    a change's way to its job pays no round trip for it (a reading up to a second old is as good for a trend)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._value = CALM
        self._until = float("-inf")
        self._reading: asyncio.Task[int] | None = None

    def pressure(self) -> int:
        """The last reading; starts a new one when it is older than a second."""
        if self._clock() >= self._until and self._reading is None:
            self._reading = asyncio.create_task(self.refresh(), name="budget-reading")
            self._reading.add_done_callback(self._read)
        return self._value

    def _read(self, _: asyncio.Task[int]) -> None:
        self._reading = None

    async def refresh(self) -> int:
        """Read the budget now (what ``pressure`` starts)."""
        self._until = self._clock() + CACHE_SECONDS
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hmget(self._keys.cf_rate_bucket, ["tokens", "budget"])
            pipe.get(self._keys.cf_pause_until)
            (tokens, budget), paused = await pipe.execute()
        except RedisError as exc:
            # The window is an optimisation: a failed reading keeps the last one rather than fail anything.
            log.debug("budget.unreadable", error=repr(exc))
            return self._value
        self._value = pressure_of(_number(tokens), _number(budget), _number(paused), time.time() * 1000)
        return self._value
