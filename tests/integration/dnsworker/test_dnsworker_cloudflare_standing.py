"""Cloudflare counts its rate limit per user, over the dashboard and every tool using the account
(developers.cloudflare.com/fundamentals/api/reference/limits), and past it blocks every call for the rest of the
window. The dns-worker's own limiter counts only its own calls; Cloudflare's ``Ratelimit`` header in each answer
shows what everyone else spent, and the worker keeps to it."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from flareport_cfemu.testing import ZONE_ID, RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from fptest.dnsworker_harness import send, service, settings_for
from fptest.waiting import already, wait_for

from .test_dnsworker_lanes import CREATE_APP, access_job


async def test_a_budget_spent_by_another_tool_is_not_overrun(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # 100 requests per 6 s (Cloudflare's 1,200 per 5 minutes, scaled down), the worker configured alike.
    emu.emulator.configure(rate_limit=100, rate_window_seconds=6)
    settings = settings_for(
        redis_server.url, prefix, emu, CLOUDFLARE_RATE_LIMIT_REQUESTS=100, CLOUDFLARE_RATE_LIMIT_WINDOW_SECONDS=6
    )
    # Another tool with the same token (a script, the dashboard's user) spends 80 of the window's 100.
    async with emu.async_client() as other:
        for _ in range(80):
            await other.zones.get(zone_id=ZONE_ID)
    svc = service(settings, redis)
    running = asyncio.create_task(svc.reading.run())
    log = emu.emulator.log
    created = f"{CREATE_APP} 201"
    try:
        await send(redis, keys, [access_job(n) for n in range(40)])
        await wait_for(
            lambda: already(log.status_counters[created] == 40), timeout=30, what="the 40 Access apps created"
        )
    finally:
        svc.reading.stop()
        await running
        await svc.close()
    refused = {k: v for k, v in log.status_counters.items() if k.endswith(" 429")}
    assert refused == {}, f"the worker overran the budget the other tool left it: {refused}"
    standing = await redis.hgetall(keys.cf_rate_standing)
    assert standing, "the worker kept Cloudflare's standing from its answers"
