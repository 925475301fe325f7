"""The zones' lane: a zone's DNS job is read at once and its calls go ahead of a backlog waiting for the rate limit.

A fleet coming up queues thousands of tunnel and Access jobs; a zone has one job in flight, carrying the records of
every hostname that changed. Queued behind that backlog in one stream, and behind its calls at the rate limiter,
the zone's records would wait for the whole backlog, once per job of the zone.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    AccessPolicyDef,
    DesiredAccessApp,
    DesiredRecord,
    SyncAccessApp,
    SyncDnsZone,
)
from fptest.dnsworker_harness import BATCH, records_named, send, service, settings_for
from fptest.waiting import already, wait_for

from .conftest import TUNNEL_ID

CREATE_APP = "POST /accounts/{account_id}/access/apps"


def access_job(n: int) -> SyncAccessApp:
    hostname = f"app{n}.example.com"
    allow = AccessPolicyDef(name="staff", decision="allow", include=({"email_domain": {"domain": "example.com"}},))
    return SyncAccessApp(hostname=hostname, version="v1", app=DesiredAccessApp(hostname=hostname, inline=(allow,)))


async def test_a_zone_job_is_written_ahead_of_a_backlog_of_access_jobs_waiting_for_the_rate_limit(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # 10 calls per second (11 less the limiter's margin): 100 Access apps take ten windows. The bound is not tight:
    # while the zone's job is between two calls (planning, a Redis write, a call in flight) the Access calls take
    # the budget that frees up, in bursts of up to a window's worth, so the count depends on the machine's load.
    # Measured: the zone's record comes after 7-8 of them (15 in the worst CI run at 60); 64 without the lane (it
    # waits for the backlog not read yet), 91 with a first-come limiter (behind every caller already reading).
    settings = settings_for(
        redis_server.url, prefix, emu, CLOUDFLARE_RATE_LIMIT_REQUESTS=11, CLOUDFLARE_RATE_LIMIT_WINDOW_SECONDS=1
    )
    svc = service(settings, redis)
    running = asyncio.create_task(svc.reading.run())
    try:
        await send(redis, keys, [access_job(n) for n in range(100)])
        log = emu.emulator.log
        await wait_for(lambda: already(log.count(CREATE_APP) >= 5), what="the Access backlog to reach Cloudflare")
        before = log.count(CREATE_APP)
        zone = SyncDnsZone(
            zone_name="example.com", version="v1", records=(DesiredRecord(name="web.example.com", tunnel_id=TUNNEL_ID),)
        )
        await send(redis, keys, [zone])

        await wait_for(lambda: already(log.count(BATCH) == 1), timeout=30, what="the zone's records to be written")
        overtaken = log.count(CREATE_APP) - before
        assert overtaken < 30, f"the zone's job waited for {overtaken} queued Access calls (of 100)"
        assert [r["content"] for r in records_named(emu, "web.example.com")] == [f"{TUNNEL_ID}.cfargotunnel.com"]
        assert await redis.xlen(keys.cf_jobs_zones) <= 1, "the zone's job came and went on the zones' lane"
        await wait_for(lambda: already(log.count(CREATE_APP) == 100), timeout=30, what="the Access backlog to drain")
    finally:
        svc.reading.stop()
        await running
        await svc.close()
