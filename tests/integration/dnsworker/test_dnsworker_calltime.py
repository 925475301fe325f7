"""A job's result says how long Cloudflare took to answer its calls (``JobResult.cloudflare_ms``), without the time
the job waited for the shared rate limiter: the reconciler's coalescing window grows with it, and a spent rate
budget alone must not make Cloudflare look slow."""

from __future__ import annotations

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, SyncDnsZone
from fptest.dnsworker_harness import BATCH, drain, job_results, send, service, settings_for

from .conftest import TUNNEL_ID


def dns_job(names: list[str], version: str) -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names)
    return SyncDnsZone(zone_name="example.com", version=version, records=records)


def limiter_waited() -> float:
    return REGISTRY.get_sample_value("flareport_cloudflare_rate_limit_wait_seconds_total") or 0.0


async def test_a_result_counts_cloudflares_answer_time_and_not_the_rate_limiters_queue(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # One call per 1.05 s span: the job's few calls wait for the limiter a whole span each.
    settings = settings_for(
        redis_server.url, prefix, emu, CLOUDFLARE_RATE_LIMIT_REQUESTS=2, CLOUDFLARE_RATE_LIMIT_WINDOW_SECONDS=1
    )
    emu.emulator.set_faults([{"endpoint": BATCH, "latency_ms": 300, "times": 1}])
    svc = service(settings, redis)
    try:
        await send(redis, keys, [dns_job(["a.example.com", "b.example.com"], "v1")])
        before = limiter_waited()
        await drain(svc)
        waited = limiter_waited() - before
        [result] = await job_results(redis, keys)
        assert result.ok and result.writes == 1
        assert waited >= 1.0, "the job's calls waited for the rate limiter"
        # The batch's 300 ms are counted; the seconds its calls waited for the limiter are not.
        assert result.cloudflare_ms is not None
        assert 300 <= result.cloudflare_ms < 300 + 1000 * waited, (result.cloudflare_ms, waited)
    finally:
        await svc.close()
