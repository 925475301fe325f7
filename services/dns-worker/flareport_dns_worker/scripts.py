"""The dns-worker's Lua scripts (``lua/*.lua``), one typed wrapper each: the only code that knows their KEYS/ARGV
order.

They stay registered script objects (EVALSHA, loaded again by redis-py when a restarted Redis lost its cache): each
runs on a client, never inside a pipeline or MULTI, and the rate limit's runs before every Cloudflare call.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common import lua

_TAKE_TOKEN = lua.load("flareport_dns_worker", "take_token")
_END_CALL = lua.load("flareport_dns_worker", "end_call")
_PAUSE_CALLS = lua.load("flareport_dns_worker", "pause_calls")
_RENEW_LEASE = lua.load("flareport_dns_worker", "renew_lease")
_RELEASE_LEASE = lua.load("flareport_dns_worker", "release_lease")


class TakeToken:
    """``take_token.lua``: admit one call under the shared rate limit unless calls are paused."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_TAKE_TOKEN.source)

    async def __call__(
        self,
        calls_key: str,
        view_key: str,
        pause_key: str,
        recent_key: str,
        standing_key: str,
        serial_key: str,
        *,
        budget: int,
        span_ms: int,
        second_budget: int = 0,
        second_span_ms: int = 0,
        ticket: str = "",
        hold_ms: int = 0,
    ) -> tuple[int, int]:
        """(0, the call's serial) when it was admitted, else (the milliseconds to wait before asking again, 0)."""
        args: list[int | str] = [budget, span_ms, second_budget, second_span_ms, ticket, hold_ms]
        keys = [calls_key, view_key, pause_key, recent_key, standing_key, serial_key]
        wait_ms, serial = await self._script(keys=keys, args=args)
        return int(wait_ms), int(serial)


class EndCall:
    """``end_call.lua``: a call ended; under the per-second cap it counts one second span more, and Cloudflare's
    standing in its answer (``remaining`` None: none) is what the limiter keeps to."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_END_CALL.source)

    async def __call__(
        self,
        recent_key: str,
        standing_key: str,
        serial_key: str,
        *,
        ticket: str,
        serial: int,
        remaining: int | None = None,
        reset_ms: int = 0,
        reserve: int = 0,
    ) -> None:
        args: list[int | str] = [ticket, serial, "" if remaining is None else remaining, reset_ms, reserve]
        await self._script(keys=[recent_key, standing_key, serial_key], args=args)


class PauseCalls:
    """``pause_calls.lua``: pause everyone's calls, never shortening a pause that lasts longer."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_PAUSE_CALLS.source)

    async def __call__(self, pause_key: str, *, pause_ms: int) -> int:
        """The Redis time (ms) the new pause ends at (an older, longer pause may outlast it)."""
        return int(await self._script(keys=[pause_key], args=[pause_ms]))


class RenewLease:
    """``renew_lease.lua``: extend a lease only while the caller's token holds it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_RENEW_LEASE.source)

    async def __call__(self, lease_key: str, *, token: str, lease_ms: int) -> bool:
        """Whether the lease was extended to ``lease_ms`` (``False``: it is gone or someone else's)."""
        return bool(await self._script(keys=[lease_key], args=[token, lease_ms]))


class ReleaseLease:
    """``release_lease.lua``: delete a lease only while the caller's token holds it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_RELEASE_LEASE.source)

    async def __call__(self, lease_key: str, *, token: str) -> bool:
        """Whether the lease was deleted (``False``: it is gone or someone else's)."""
        return bool(await self._script(keys=[lease_key], args=[token]))
