"""Cloudflare counts its rate limit per user, over the dashboard and every tool using the account
(developers.cloudflare.com/fundamentals/api/reference/limits), and past it blocks every call for the rest of the
window. The dns-worker's own limiter counts only its own calls; Cloudflare's ``Ratelimit`` header in each answer
shows what everyone else spent, and the worker keeps to it."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_cfemu.testing import ZONE_ID, RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from fptest.dnsworker_harness import limited_alike

from .test_dnsworker_address_limit import create_apps


async def test_a_budget_spent_by_another_tool_is_not_overrun(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # 100 requests per 6 s (Cloudflare's 1,200 per 5 minutes, scaled down), the worker configured alike.
    settings = limited_alike(redis_server.url, prefix, emu, requests=100, window_seconds=6)
    # Another tool with the same token (a script, the dashboard's user) spends 80 of the window's 100.
    async with emu.async_client() as other:
        for _ in range(80):
            await other.zones.get(zone_id=ZONE_ID)
    refused = await create_apps(emu, redis, keys, settings, 40)
    assert refused == {}, f"the worker overran the budget the other tool left it: {refused}"
    standing = await redis.hgetall(keys.cf_rate_standing)
    assert standing, "the worker kept Cloudflare's standing from its answers"
