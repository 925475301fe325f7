"""Issue 9, item 2 at the dns-worker: Cloudflare calls per converged rule for coalesced bursts, vs the minimum.

Reuses ``bench/cloudflare_calls.py``: a fresh in-process emulator and the real dns-worker per burst, fed the jobs
the reconciler emits for a burst of N new rules on one tunnel in one zone (one ``sync_dns_zone`` and one
``sync_tunnel_ingress`` carrying all N), plus, with Access, one ``sync_access_app`` per hostname. The whole-stack
arrivals (events through the API and the reconciler) are measured in ``harness.convergence``.

Minimum = the fewest writes Cloudflare's API allows: ceil(N / batch size) DNS batches + one configuration PUT,
plus one app create per Access app (an Access app is one object per hostname; there is no batch endpoint).
Reads are not part of the minimum (zero when the observed state is cached); cold bursts need a few.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from bench import cloudflare_calls

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import start_emulator
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import AccessPolicyDef, DesiredAccessApp, SyncAccessApp
from flareport_common.streams.producer import Producer
from flareport_dns_worker.service import DnsWorkerService


async def access_burst(redis_url: str, n: int, batch_size: int) -> tuple[Counter[str], float]:
    emu = await start_emulator(EmulatorConfig(rate_limit=10**9), seed=cloudflare_calls.SEED)
    redis = aioredis.Redis.from_url(redis_url)
    prefix = f"benchaccess{n}{time.monotonic_ns()}:"
    settings = cloudflare_calls.worker_settings(
        redis_url, prefix, emu.base_url, CLOUDFLARE_DNS_BATCH_SIZE=str(batch_size)
    )
    service = DnsWorkerService(settings, redis, consumer="bench")
    names = [f"app{i:05d}.example.com" for i in range(n)]
    allow = (AccessPolicyDef(name="staff", decision="allow", include=({"email_domain": {"domain": "example.com"}},)),)
    access = [
        SyncAccessApp(hostname=name, version="v1", app=DesiredAccessApp(hostname=name, inline=allow)) for name in names
    ]
    started = time.perf_counter()
    try:
        await Producer(redis).send_many(Keys(prefix).cf_jobs, [*cloudflare_calls.jobs_for(names, "v1"), *access])
        while await service.consumer.run_burst():
            pass
        elapsed = time.perf_counter() - started
        apps = emu.emulator.dump().get("access_apps", {})
        assert len(apps) == n, f"expected {n} Access apps, found {len(apps)}"
        return Counter(emu.emulator.requests(limit=0)["counters"]), elapsed
    finally:
        await service.close()
        await redis.aclose()
        await emu.stop()


def _row(n: int, counters: Counter[str], elapsed: float, minimum: int, access: bool) -> dict[str, Any]:
    total = sum(counters.values())
    reads = sum(v for k, v in counters.items() if k.startswith("GET "))
    writes = total - reads
    return {
        "rules": n, "access": access, "calls": total, "writes": writes, "reads": reads, "minimum": minimum,
        "calls_per_rule": round(total / n, 4), "minimum_per_rule": round(minimum / n, 4),
        "writes_over_minimum": round(writes / minimum, 3), "calls_over_minimum": round(total / minimum, 3),
        "seconds": round(elapsed, 2),
    }  # fmt: skip


async def run(redis_url: str, sizes: list[int], access_sizes: list[int], batch_size: int = 200) -> dict[str, Any]:
    rows = []
    for n in sizes:
        counters, elapsed = await cloudflare_calls.burst(redis_url, n, batch_size, coalesced=True)
        rows.append(_row(n, counters, elapsed, math.ceil(n / batch_size) + 1, False))
    for n in access_sizes:
        counters, elapsed = await access_burst(redis_url, n, batch_size)
        row = _row(n, counters, elapsed, math.ceil(n / batch_size) + 1 + n, True)
        rows.append({**row, "by_endpoint": dict(counters.most_common())})
    return {"batch_size": batch_size, "bursts": rows}


def main_sync(redis_url: str, sizes: list[int], access_sizes: list[int]) -> dict[str, Any]:
    return asyncio.run(run(redis_url, sizes, access_sizes))
