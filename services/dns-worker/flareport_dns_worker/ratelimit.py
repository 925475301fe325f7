"""The Cloudflare rate limit, shared by every dns-worker replica through Redis.

Cloudflare allows ``N`` requests per window (1,200 per 5 minutes) per token and answers 429 past it. Every
call — read or write — first takes a token from one bucket in Redis, in a Lua script so that replicas never
race; the script reads Redis' own clock (``TIME``), so replica clocks do not matter.

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

# KEYS[1] bucket hash (tokens, at_ms), KEYS[2] pause-until (ms); ARGV: burst, refill per ms.
# Returns 0 when a token was taken, else the milliseconds to wait before trying again.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return pause - now end
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + (now - at) * rate)
local ttl = math.ceil(burst / rate) + 1000
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ttl)
return math.max(1, math.ceil((1 - tokens) / rate))
"""

# KEYS[1] pause-until; ARGV[1] pause length in ms. Only ever moves the pause later.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then redis.call('SET', KEYS[1], tostring(untl), 'PX', tonumber(ARGV[1]) + 1000) end
return untl
"""


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
        self._take = redis.register_script(_TAKE)
        self._pause = redis.register_script(_PAUSE)

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
            keys=[self._keys.cf_rate_bucket, self._keys.cf_pause_until],
            args=[self.burst, repr(self.refill_per_ms)],
        )
        return int(wait_ms) / 1000

    async def pause(self, seconds: float) -> None:
        """Stop every replica's calls for ``seconds`` (a 429's Retry-After)."""
        await self._pause(keys=[self._keys.cf_pause_until], args=[max(1, int(seconds * 1000))])
