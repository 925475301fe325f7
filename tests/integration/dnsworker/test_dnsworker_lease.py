"""A job and the target's lease: the lease and the last applied version are read in one round trip, and whatever
that read finds, a busy target is never written twice at once and a job already applied is never written again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from flareport_cfemu.testing import ZONE_ID, RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.errors import TemporaryError
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, IngressEntry, SyncDnsZone, SyncTunnelIngress
from flareport_common.streams.consumer import Delivery
from flareport_dns_worker.dns_plan import DnsRecord
from flareport_dns_worker.service import DnsWorkerService
from fptest.dnsworker_harness import ingress_of, job_results, records_named, service, settings_for

from .conftest import TUNNEL_ID

DELIVERY = Delivery(stream="cf-jobs", message_id="1-0", deliveries=1)


def ingress_job(version: str, *names: str) -> SyncTunnelIngress:
    rules = tuple(IngressEntry(hostname=n, service="http://web:8080") for n in names)
    return SyncTunnelIngress(tunnel_id=TUNNEL_ID, version=version, rules=rules)


def dns_job(version: str, *names: str) -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names)
    return SyncDnsZone(zone_name="example.com", version=version, records=records)


@pytest.fixture
async def svc(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, prefix: str
) -> AsyncIterator[DnsWorkerService]:
    running = service(settings_for(redis_server.url, prefix, emu), redis)
    yield running
    await running.close()


def calls(emu: RunningEmulator) -> int:
    return int(emu.emulator.requests(limit=0)["total"])


def hostnames(emu: RunningEmulator) -> list[str]:
    return [str(rule.get("hostname")) for rule in ingress_of(emu, TUNNEL_ID) if rule.get("hostname")]


async def test_a_target_leased_by_another_worker_is_not_written_and_the_job_comes_back(
    emu: RunningEmulator, redis: aioredis.Redis, keys: Keys, svc: DnsWorkerService
) -> None:
    job = ingress_job("v1", "app.example.com")
    lease = keys.target_lease(job.target)
    await redis.set(lease, "another worker", px=60_000)
    emu.emulator.clear_requests()
    with pytest.raises(TemporaryError, match="being written by another worker"):
        await svc.worker.handle(job, DELIVERY)
    assert calls(emu) == 0, "a busy target must not be read or written"
    assert await redis.get(lease) == b"another worker", "the holder's lease is left as it was"
    assert "app.example.com" not in hostnames(emu)

    await redis.delete(lease)  # the holder finished without applying this version: now it goes out
    await svc.worker.handle(job, DELIVERY)
    assert "app.example.com" in hostnames(emu)
    assert await redis.exists(lease) == 0, "the lease is released after the job"


async def test_a_job_already_applied_is_answered_without_calls_whether_or_not_the_lease_is_free(
    emu: RunningEmulator, redis: aioredis.Redis, keys: Keys, svc: DnsWorkerService
) -> None:
    job = ingress_job("v1", "app.example.com")
    lease = keys.target_lease(job.target)
    await svc.worker.handle(job, DELIVERY)
    assert "app.example.com" in hostnames(emu)

    # Redelivered (a reclaim) while another worker holds the lease for a later job: answered from what
    # was applied, without waiting for the lease and without touching it.
    await redis.set(lease, "another worker", px=60_000)
    emu.emulator.clear_requests()
    await svc.worker.handle(job, DELIVERY)
    assert calls(emu) == 0
    assert await redis.get(lease) == b"another worker"

    # Redelivered with the lease free: answered the same way, and the lease taken for the look is given back.
    await redis.delete(lease)
    await svc.worker.handle(job, DELIVERY)
    assert calls(emu) == 0
    assert await redis.exists(lease) == 0, "a skipped job must not leave the target leased"
    assert [(r.version, r.ok) for r in await job_results(redis, keys)] == [("v1", True)] * 3


async def test_a_zone_job_that_waited_for_the_zone_sees_what_the_holder_wrote_and_spends_no_call_on_it(
    emu: RunningEmulator, redis: aioredis.Redis, keys: Keys, svc: DnsWorkerService
) -> None:
    """The zone's observed copy is read in the round trip that takes the zone's lease when it is free; when another
    worker holds it, the copy is read after the lease is ours, so what the holder wrote meanwhile counts."""
    await svc.worker.handle(dns_job("v1", "a.example.com"), DELIVERY)  # the zone's copy is now cached
    zone_lease = keys.target_lease(f"zone-id:{ZONE_ID}")
    await redis.set(zone_lease, "another worker", px=60_000)
    handling = asyncio.create_task(svc.worker.handle(dns_job("v2", "a.example.com", "b.example.com"), DELIVERY))
    # The holder puts a record of its own on b.example.com, in Cloudflare and in the zone's copy, then lets go.
    created = await emu.async_client().dns.records.create(
        zone_id=ZONE_ID, name="b.example.com", type="A", content="192.0.2.20", ttl=1
    )
    assert created is not None
    record = DnsRecord(id=created.id, name="b.example.com", type="A", content="192.0.2.20", proxied=False)
    await redis.hset(keys.cf_zone_records(ZONE_ID), "b.example.com", msgspec.json.encode([record]))
    emu.emulator.clear_requests()
    assert not handling.done(), "the job waits for the zone's lease"
    await redis.delete(zone_lease)
    await asyncio.wait_for(handling, 10)
    assert calls(emu) == 0, "the holder's record was seen: nothing to write, no refused batch to learn it from"
    [result] = [r for r in await job_results(redis, keys) if r.version == "v2"]
    assert [e.hostname for e in result.errors] == ["b.example.com"], "a record someone else made is left alone"
    assert [r["type"] for r in records_named(emu, "b.example.com")] == ["A"]
