"""Cloudflare's bad days: 429, 5xx, dropped connections, timeouts, a tight rate limit and two replicas."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, IngressEntry, SyncDnsZone, SyncTunnelIngress
from fptest.dnsworker_harness import (
    BATCH,
    LIST_RECORDS,
    PUT_CONFIG,
    drain,
    ingress_of,
    job_results,
    limited_alike,
    records_named,
    send,
    service,
    settings_for,
)

from .conftest import DASHBOARD_RULE, TUNNEL_ID


def dns_job(names: list[str], version: str, zone: str = "example.com") -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names)
    return SyncDnsZone(zone_name=zone, version=version, records=records)


def rate_limited(emu: RunningEmulator) -> list[str]:
    """Requests the emulator's own limiter refused (injected 429s are labelled differently)."""
    return [e["path"] for e in emu.emulator.requests()["requests"] if e["fault"] == "rate_limited"]


def intervals(emu: RunningEmulator, endpoint: str | None) -> list[tuple[datetime, datetime]]:
    """(start, end) of each request to ``endpoint`` (every request when None), as the emulator timed it."""
    spans = []
    for entry in emu.emulator.requests()["requests"]:
        if endpoint is None or entry["endpoint"] == endpoint:
            end = datetime.strptime(entry["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
            spans.append((end - timedelta(milliseconds=entry["duration_ms"]), end))
    return sorted(spans)


async def test_429_5xx_and_dropped_connections_end_in_convergence_without_duplicates(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.set_faults(
        [
            {"endpoint": BATCH, "sequence": [500, 429, "drop"], "retry_after": 1},
            {"endpoint": PUT_CONFIG, "sequence": [503, 429], "retry_after": 1},
            {"endpoint": LIST_RECORDS, "sequence": [502]},
        ]
    )
    settings = limited_alike(redis_server.url, prefix, emu, requests=20, window_seconds=2)
    svc = service(settings, redis)
    names = [f"svc{i}.example.com" for i in range(30)]
    rules = tuple(IngressEntry(hostname=n, service="http://web:80") for n in names)
    try:
        await send(
            redis, keys, [dns_job(names, "v1"), SyncTunnelIngress(tunnel_id=TUNNEL_ID, version="v1", rules=rules)]
        )
        await drain(svc)
        assert all(rule.fired for rule in emu.emulator.faults.rules), "every injected fault must have been hit"
        results = await job_results(redis, keys)
        assert [r.ok for r in results] == [True, True] and not any(r.errors for r in results)
        assert all(len(records_named(emu, n)) == 1 for n in names), "no duplicate and no missing record"
        assert len(ingress_of(emu, TUNNEL_ID)) == 32 and DASHBOARD_RULE in ingress_of(emu, TUNNEL_ID)
        assert rate_limited(emu) == [], "the shared bucket must keep the worker under Cloudflare's limit"
    finally:
        await svc.close()


async def test_a_batch_that_times_out_but_was_applied_is_not_written_twice(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.set_faults([{"endpoint": BATCH, "latency_ms": 1500, "times": 1}])
    svc = service(settings_for(redis_server.url, prefix, emu, CLOUDFLARE_REQUEST_TIMEOUT_SECONDS=1), redis)
    names = [f"slow{i}.example.com" for i in range(5)]
    try:
        await send(redis, keys, [dns_job(names, "v1")])
        await drain(svc)
        [result] = await job_results(redis, keys)
        assert result.ok and not result.errors
        assert all(len(records_named(emu, n)) == 1 for n in names)
    finally:
        await svc.close()


async def test_every_call_takes_a_token_so_a_tight_limit_is_never_exceeded(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    settings = limited_alike(redis_server.url, prefix, emu, requests=20, window_seconds=2)
    svc = service(settings, redis)
    # 24 changes of example.com, one record more each (one batch call each): more calls than one window allows.
    jobs = [dns_job([f"r{j}.example.com" for j in range(i + 1)], f"v{i}") for i in range(24)]
    try:
        await send(redis, keys, jobs)
        await drain(svc)
        assert all(records_named(emu, f"r{i}.example.com") for i in range(24))
        assert rate_limited(emu) == []
        stamps = sorted(end for _, end in intervals(emu, None))
        assert len(stamps) > 20
        busiest = max(sum(1 for t in stamps if s <= t < s + timedelta(seconds=2)) for s in stamps)
        assert busiest <= 20, f"{busiest} calls within one window of 2 s, the limit is 20"
    finally:
        await svc.close()


async def test_two_replicas_never_write_one_target_at_the_same_time(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.set_faults([{"endpoint": BATCH, "latency_ms": 40}])
    settings = settings_for(redis_server.url, prefix, emu, FLAREPORT_TARGET_LEASE_MS=1000)
    one, two = service(settings, redis, "w1"), service(settings, redis, "w2")
    versions = [[f"n{j}.example.com" for j in range(i + 1)] for i in range(8)]
    try:
        await send(redis, keys, [dns_job(names, f"v{i}") for i, names in enumerate(versions)])
        await asyncio.gather(one.run_burst(), two.run_burst())
        spans = intervals(emu, BATCH)
        assert spans, "the replicas must have written"
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, "two batch writes to one zone overlapped in time"
        newest = versions[-1]
        assert all(len(records_named(emu, n)) == 1 for n in newest), "the newest desired state wins"
        assert len(await job_results(redis, keys)) == len(versions)
    finally:
        await one.close()
        await two.close()
