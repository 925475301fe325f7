"""Cloudflare's per-address limit (200 requests a second from one IP), scaled down to 100: a backlog of jobs with the
window's budget to spare goes out at the per-second cap, and Cloudflare never answers 429. (At 20 a second the cap's
margin is one call, which a loaded machine's jitter between admitting a call and sending it can spend.)"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.settings import DnsWorkerSettings
from fptest.dnsworker_harness import send, service, settings_for
from fptest.waiting import already, wait_for

from .test_dnsworker_lanes import CREATE_APP, access_job


async def create_apps(
    emu: RunningEmulator, redis: aioredis.Redis, keys: Keys, settings: DnsWorkerSettings, count: int
) -> dict[str, int]:
    """Run a worker until ``count`` Access apps were created (created, not merely sent: a refused create is logged
    too, and the worker sends it again); the 429s Cloudflare answered meanwhile, by endpoint."""
    svc = service(settings, redis)
    running = asyncio.create_task(svc.reading.run())
    log = emu.emulator.log
    created = f"{CREATE_APP} 201"
    try:
        await send(redis, keys, [access_job(n) for n in range(count)])
        await wait_for(
            lambda: already(log.status_counters[created] == count), timeout=30, what=f"the {count} Access apps created"
        )
    finally:
        svc.reading.stop()
        await running
        await svc.close()
    return {k: v for k, v in log.status_counters.items() if k.endswith(" 429")}


async def test_a_backlog_goes_out_at_the_per_second_cap_without_a_429(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.configure(address_rate_limit=100)
    settings = settings_for(redis_server.url, prefix, emu, CLOUDFLARE_RATE_LIMIT_PER_SECOND=100)
    assert settings.cloudflare.rate_limit_requests == 1200, "the window's budget has room for the whole backlog"
    started = time.monotonic()
    refused = await create_apps(emu, redis, keys, settings, 200)
    took = time.monotonic() - started
    assert refused == {}, f"Cloudflare refused calls for the address's rate: {refused}"
    # 95 calls per 1.05 s (100 less the margin): the 200 creates (and the lookups before them) need three spans.
    assert took > 2 * 1.05, f"200 calls went in {took:.2f} s: faster than the per-second cap allows"


async def test_calls_that_reach_cloudflare_late_do_not_bunch_up_with_the_next_second_s(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # The first calls reach Cloudflare 400 ms after they were sent (new TLS connections, a slow path), the later ones
    # at once. Counted from their admission, the first second's calls would leave the cap's span while Cloudflare
    # still counts them, and the next second's would arrive in the same second as them: 429s.
    emu.emulator.configure(address_rate_limit=100)
    emu.emulator.add_fault({"endpoint": "*", "arrival_delay_ms": 400, "times": 95})
    settings = settings_for(redis_server.url, prefix, emu, CLOUDFLARE_RATE_LIMIT_PER_SECOND=100)
    refused = await create_apps(emu, redis, keys, settings, 200)
    assert refused == {}, f"Cloudflare refused calls for the address's rate: {refused}"
