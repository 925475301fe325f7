"""Cloudflare calls per converged rule, for bursts of 1, 10, 100 and 1,000 new rules.

Each burst publishes N container rules on one tunnel in one zone (a proxied CNAME plus an ingress rule per
rule) to a fresh in-process emulator and a fresh redis-server, runs the real dns-worker until the jobs are
drained, and counts the calls the emulator saw. Two arrivals are measured:

* coalesced - the reconciler's normal output: one ``sync_dns_zone`` and one ``sync_tunnel_ingress`` job
  carrying all N rules;
* one by one - no coalescing at all: a job pair per rule, each carrying the rules so far (the worst case).

"minimum" is the fewest writes Cloudflare's API allows: for a coalesced burst ceil(N / batch size) DNS batch
calls plus one tunnel configuration PUT; one by one, a DNS write and a PUT per arrival. Reads come on top:
the zone and record lists while the observed state is cold, and the configuration GET before each PUT (a
PUT replaces the whole ingress, so it is never written from a copy that may be stale). DockFlare needs about
4-6 calls per container start. The rate limit is lifted so only calls are measured, not waiting.

Usage: python bench/cloudflare_calls.py [--batch-size 200] [--max 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ACCOUNT_ID, OLD_ZONE_CREATED_ON, ZONE_ID, start_emulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.logs import setup_logging
from flareport_common.messages.cfjobs import (
    CfJobMessage,
    DesiredRecord,
    IngressEntry,
    SyncDnsZone,
    SyncTunnelIngress,
)
from flareport_common.settings import DnsWorkerSettings, load_dns_worker
from flareport_common.streams.producer import Producer
from flareport_dns_worker.service import DnsWorkerService

TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
SEED = {
    "accounts": [{"id": ACCOUNT_ID, "name": "bench"}],
    "zones": [{"id": ZONE_ID, "name": "example.com", "account_id": ACCOUNT_ID, "created_on": OLD_ZONE_CREATED_ON}],
    "tunnels": [{"id": TUNNEL_ID, "name": "bench", "config_src": "cloudflare"}],
}


def jobs_for(names: list[str], version: str) -> list[CfJobMessage]:
    return [
        SyncDnsZone(
            zone_name="example.com",
            version=version,
            records=tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names),
        ),
        SyncTunnelIngress(
            tunnel_id=TUNNEL_ID,
            version=version,
            rules=tuple(IngressEntry(hostname=n, service="http://web:8080") for n in names),
        ),
    ]


def worker_settings(redis_url: str, prefix: str, base_url: str, **extra: str) -> DnsWorkerSettings:
    """A dns-worker's settings against the emulator at ``base_url``, with no rate limit of its own."""
    env = {
        "REDIS_URL": redis_url,
        "FLAREPORT_KEY_PREFIX": prefix,
        "CLOUDFLARE_API_TOKEN": "bench",
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
        "CLOUDFLARE_API_BASE_URL": base_url,
        "CLOUDFLARE_RATE_LIMIT_REQUESTS": str(10**9),
    }
    return load_dns_worker({**env, **extra})


async def burst(redis_url: str, n: int, batch_size: int, *, coalesced: bool) -> tuple[Counter[str], float]:
    emu = await start_emulator(EmulatorConfig(rate_limit=10**9), seed=SEED)
    redis = aioredis.Redis.from_url(redis_url)
    prefix = f"bench{n}{'c' if coalesced else 's'}{time.monotonic_ns()}:"
    settings = worker_settings(redis_url, prefix, emu.base_url, CLOUDFLARE_DNS_BATCH_SIZE=str(batch_size))
    service = DnsWorkerService(settings, redis, consumer="bench")
    names = [f"app{i:05d}.example.com" for i in range(n)]
    producer = Producer(redis)
    keys = Keys(prefix)
    started = time.perf_counter()
    try:
        if coalesced:
            await producer.send_many(keys.cf_jobs, jobs_for(names, "v1"))
            while await service.consumer.run_burst():
                pass
        else:
            for i in range(n):
                await producer.send_many(keys.cf_jobs, jobs_for(names[: i + 1], f"v{i}"))
                while await service.consumer.run_burst():
                    pass
        elapsed = time.perf_counter() - started
        records = emu.emulator.state.records_of(ZONE_ID)
        assert len(records) == n, f"expected {n} records, found {len(records)}"
        return Counter(emu.emulator.requests(limit=0)["counters"]), elapsed
    finally:
        await service.close()
        await redis.aclose()
        await emu.stop()


async def main(batch_size: int, largest: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalRedis(Path(tmp))
        local.start()
        try:
            await run_bursts(local.url, batch_size, largest)
        finally:
            local.stop()


async def run_bursts(redis_url: str, batch_size: int, largest: int) -> None:
    print(f"batch size {batch_size}; calls counted by the emulator; 'min' = fewest writes possible\n")
    header = f"{'rules':>6} {'arrival':>10} {'calls':>6} {'writes':>6} {'reads':>6} {'min':>5}"
    print(header + f" {'calls/rule':>10} {'min/rule':>8} {'seconds':>8}")
    for n in (1, 10, 100, 1000):
        if n > largest:
            break
        for coalesced in (True, False):
            # Coalesced: the whole burst's writes; one by one: every arrival needs its own DNS write and PUT.
            minimum = math.ceil(n / batch_size) + 1 if coalesced else 2 * n
            counters, elapsed = await burst(redis_url, n, batch_size, coalesced=coalesced)
            total = sum(counters.values())
            reads = sum(v for k, v in counters.items() if k.startswith("GET "))
            arrival = "coalesced" if coalesced else "one by one"
            print(
                f"{n:>6} {arrival:>10} {total:>6} {total - reads:>6} {reads:>6} {minimum:>5}"
                f" {total / n:>10.3f} {minimum / n:>8.3f} {elapsed:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--max", type=int, default=1000, help="largest burst to run (1, 10, 100 or 1000)")
    args = parser.parse_args()
    setup_logging("error", "console")
    asyncio.run(main(args.batch_size, args.max))
