"""What one bad record costs a shared zone, and what the dns-worker's checks before a batch cost.

Two measurements:

* **calls per change** - a zone of N records, one of which Flareport cannot write: either an invalid name (left out
  by the worker's name check before any batch) or a valid name Cloudflare refuses (the emulator's record quota).
  Then ten changes of the zone follow (each re-points one record to another tunnel), each one job, run by the real
  dns-worker against a fresh in-process emulator and redis-server; the emulator counts the write calls of each.
  The fewest possible is one batch call per change. Before the fix every change cost a refused batch plus one call
  per operation of it, because the bad record was planned, and refused, again in every batch;
* **check cost** - the pure part the worker now runs for every record of every zone job (the name check and the
  zone check against the account's zones), per record, for a job of 20,000 records against 50 zones;
* **plan cost** - the plan of a zone job whose 20,000 records Cloudflare already holds as wanted (what every job of
  a large zone plans for all but the few names that changed), best of five.

Usage: python bench/dns_zone_checks.py [--records 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.cloudflare_calls

from bench import cloudflare_calls

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, start_emulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, SyncDnsZone
from flareport_common.streams.producer import Producer
from flareport_dns_worker.service import DnsWorkerService

T1 = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
T2 = "7ff42ae2-765d-4adf-8112-31c55c1551ef"
SEED = {
    "accounts": [{"id": ACCOUNT_ID, "name": "bench"}],
    "zones": [{"id": ZONE_ID, "name": "example.com", "account_id": ACCOUNT_ID}],
}
BATCH = "POST /zones/{zone_id}/dns_records/batch"
WRITES = (BATCH, "POST /zones/{zone_id}/dns_records", "PATCH /zones/{zone_id}/dns_records/{dns_record_id}")


def zone_job(names: list[str], version: str, repointed: int) -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=T2 if i < repointed else T1) for i, n in enumerate(names))
    return SyncDnsZone(zone_name="example.com", version=version, records=records)


async def changes(redis_url: str, n: int, bad: str) -> tuple[int, list[int]]:
    """Write calls of the first job and of each of ten changes, for a zone whose last record is ``bad``."""
    quota = n if bad == "refused" else None
    emu = await start_emulator(EmulatorConfig(rate_limit=10**9, record_quota=quota), seed=SEED)
    redis = aioredis.Redis.from_url(redis_url)
    prefix = f"bench-zone-{bad}-{time.monotonic_ns()}:"
    settings = cloudflare_calls.worker_settings(redis_url, prefix, emu.base_url)
    service = DnsWorkerService(settings, redis, consumer="bench")
    names = [f"app{i:05d}.example.com" for i in range(n)]
    names.append("bad_na!me.example.com" if bad == "invalid" else "over.example.com")
    producer = Producer(redis)
    keys = Keys(prefix)

    def writes() -> int:
        counters: Counter[str] = Counter(emu.emulator.requests(limit=0)["counters"])
        return sum(counters[w] for w in WRITES)

    try:
        per_job: list[int] = []
        for change in range(11):
            before = writes()
            await producer.send_many(keys.cf_jobs, [zone_job(names, f"v{change}", repointed=change)])
            while await service.consumer.run_burst():
                pass
            per_job.append(writes() - before)
        return per_job[0], per_job[1:]
    finally:
        await service.close()
        await redis.aclose()
        await emu.stop()


def check_cost(records: int = 20_000, zones: int = 50) -> float:
    """Microseconds per record of the name and zone checks."""
    # Imported here: the call counts above also run against older workers, which lack it.
    from flareport_dns_worker.dns_sync import placed

    account = {f"zone{i}.example": f"id{i}" for i in range(zones)} | {"example.com": "z"}
    desired = tuple(DesiredRecord(name=f"app{i:05d}.svc.example.com", tunnel_id=T1) for i in range(records))
    started = time.perf_counter()
    wanted, errors = placed(desired, "example.com", account)
    elapsed = time.perf_counter() - started
    assert len(wanted) == records and not errors
    return elapsed / records * 1e6


def plan_cost(records: int = 20_000) -> float:
    """Milliseconds to plan a zone of ``records`` names that already hold what is wanted (best of five)."""
    from flareport_dns_worker.dns_plan import DnsRecord, Wanted, marker, plan_dns, tunnel_target

    owner = "bench"
    wanted = [Wanted(f"app{i:05d}.svc.example.com", T1) for i in range(records)]
    current = {
        w.name: [DnsRecord(id=f"r{i}", name=w.name, type="CNAME", content=tunnel_target(T1), proxied=True,
                           comment=marker(owner))]
        for i, w in enumerate(wanted)
    }  # fmt: skip
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        plan = plan_dns(current, wanted, owner, list(current))
        best = min(best, time.perf_counter() - started)
    assert not (plan.posts or plan.patches or plan.deletes) and len(plan.managed) == records
    return best * 1000


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalRedis(Path(tmp))
        local.start()
        try:
            print(f"zone of {n + 1} records, one of them bad; write calls per job (fewest possible per change: 1)\n")
            print(f"{'bad record':>22} {'first job':>10} {'per change (10 changes)':>26}")
            for bad, label in (("invalid", "invalid name"), ("refused", "refused by Cloudflare")):
                first, later = await changes(local.url, n, bad)
                print(f"{label:>22} {first:>10} {' '.join(str(c) for c in later):>26}", flush=True)
        finally:
            local.stop()
    print(f"\nname + zone check: {check_cost():.2f} us per record (20,000 records, 51 zones)")
    print(f"plan of a zone of 20,000 records already in place: {plan_cost():.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.records))
