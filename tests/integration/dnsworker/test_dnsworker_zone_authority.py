"""The real dns-worker against the emulator: a job's zone is the only zone it writes in, and one bad record never
makes a shared zone pay single calls for every later change.

The account holds ``example.test`` and ``victim.test`` (and, where a test says so, the subzone
``dev.example.test``). An agent allowed only ``example.test`` is what sends ``pwn.victim.test`` with
``zonename: example.test``; these tests send that job straight to the worker, which must hold on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ACCOUNT_ID, RunningEmulator, start_emulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, SyncDnsZone, VerifyTarget
from flareport_common.messages.cfresults import JobResult
from fptest.dnsworker_harness import BATCH, drain, job_results, send, service, settings_for

from .conftest import TUNNEL_ID

EXAMPLE = "a" * 32
VICTIM = "b" * 32
DEV = "c" * 32
SINGLE_POST = "POST /zones/{zone_id}/dns_records"
ZONES: list[dict[str, Any]] = [
    {"id": EXAMPLE, "name": "example.test", "account_id": ACCOUNT_ID},
    {"id": VICTIM, "name": "victim.test", "account_id": ACCOUNT_ID},
]


async def _emulator(*zones: dict[str, Any]) -> RunningEmulator:
    seed = {"accounts": [{"id": ACCOUNT_ID, "name": "Flareport test"}], "zones": [*ZONES, *zones]}
    return await start_emulator(EmulatorConfig(), seed=seed)


@pytest.fixture
async def two_zones() -> AsyncIterator[RunningEmulator]:
    running = await _emulator()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def with_subzone() -> AsyncIterator[RunningEmulator]:
    running = await _emulator({"id": DEV, "name": "dev.example.test", "account_id": ACCOUNT_ID})
    try:
        yield running
    finally:
        await running.stop()


def zone_job(zone: str, names: list[str], version: str) -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names)
    return SyncDnsZone(zone_name=zone, version=version, records=records)


def names_in(emu: RunningEmulator, zone_id: str) -> set[str]:
    return {r["name"] for r in emu.emulator.state.records_of(zone_id).values()}


def problems(result: JobResult) -> list[tuple[str, str | None]]:
    return [(e.kind, e.hostname) for e in result.errors]


async def test_a_job_for_one_zone_never_writes_a_name_of_another_zone_of_the_account(
    two_zones: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, two_zones), redis)
    try:
        await send(redis, keys, [zone_job("example.test", ["app.example.test", "pwn.victim.test"], "v1")])
        await drain(svc)
        assert names_in(two_zones, VICTIM) == set(), "a job for example.test must write nothing in victim.test"
        assert names_in(two_zones, EXAMPLE) == {"app.example.test"}, "the job's other records still converge"
        [result] = await job_results(redis, keys)
        assert result.ok and problems(result) == [("zone", "pwn.victim.test")]
        assert "not inside zone example.test" in result.errors[0].message
    finally:
        await svc.close()


async def test_a_job_zone_missing_from_the_account_is_an_error_not_a_fallback_to_a_zone_that_exists(
    two_zones: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, two_zones), redis)
    try:
        await send(redis, keys, [zone_job("dev.example.test", ["a.dev.example.test"], "v1")])
        await drain(svc)
        assert names_in(two_zones, EXAMPLE) == set(), "a record of a missing zone must not land in its parent"
        [result] = await job_results(redis, keys)
        assert problems(result) == [("zone", "a.dev.example.test")]
        assert "zone dev.example.test is not a zone of this Cloudflare account" in result.errors[0].message
    finally:
        await svc.close()


async def test_a_name_of_a_delegated_subzone_is_an_error_in_the_parent_zones_job_and_written_by_its_own(
    with_subzone: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, with_subzone), redis)
    try:
        await send(redis, keys, [zone_job("example.test", ["a.dev.example.test", "www.example.test"], "v1")])
        await drain(svc)
        assert names_in(with_subzone, EXAMPLE) == {"www.example.test"}, "a shadowed record must not be written"
        assert names_in(with_subzone, DEV) == set(), "nor moved into a zone the job did not name"
        [result] = await job_results(redis, keys)
        assert problems(result) == [("zone", "a.dev.example.test")]
        assert "set its zone to dev.example.test" in result.errors[0].message
        await send(redis, keys, [zone_job("dev.example.test", ["a.dev.example.test"], "v1")])
        await drain(svc)
        assert names_in(with_subzone, DEV) == {"a.dev.example.test"}, "the subzone's own job writes it"
    finally:
        await svc.close()


async def test_an_invalid_name_is_left_out_and_the_rest_of_the_zone_goes_in_one_batch_now_and_next_time(
    two_zones: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, two_zones), redis)
    names = ["good1.example.test", "bad_na!me.example.test", "good2.example.test"]
    try:
        await send(redis, keys, [zone_job("example.test", names, "v1")])
        await drain(svc)
        assert names_in(two_zones, EXAMPLE) == {"good1.example.test", "good2.example.test"}
        assert (two_zones.emulator.count(BATCH), two_zones.emulator.count(SINGLE_POST)) == (1, 0), (
            "the valid records must go in one batch call, with no single-record fallback"
        )
        [first] = await job_results(redis, keys)
        assert first.ok and problems(first) == [("invalid", "bad_na!me.example.test")]
        # The zone's next change (the bad rule is still there) costs one call again.
        await send(redis, keys, [zone_job("example.test", [*names, "good3.example.test"], "v2")])
        await drain(svc)
        assert (two_zones.emulator.count(BATCH), two_zones.emulator.count(SINGLE_POST)) == (2, 0)
        assert "good3.example.test" in names_in(two_zones, EXAMPLE)
        second = (await job_results(redis, keys))[-1]
        assert problems(second) == [("invalid", "bad_na!me.example.test")], "the rule keeps showing its error"
    finally:
        await svc.close()


async def test_a_write_cloudflare_refuses_costs_single_calls_once_then_the_zones_next_change_is_one_batch(
    two_zones: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # A record quota of 2 makes Cloudflare refuse the third create, although its name and body are valid.
    two_zones.emulator.configure(record_quota=2)
    svc = service(settings_for(redis_server.url, prefix, two_zones), redis)
    try:
        first_job = zone_job("example.test", ["a.example.test", "b.example.test", "c.example.test"], "v1")
        await send(redis, keys, [first_job])
        await drain(svc)
        assert two_zones.emulator.count(BATCH) == 1 and two_zones.emulator.count(SINGLE_POST) == 3
        [first] = await job_results(redis, keys)
        assert [(e.kind, e.hostname, e.code) for e in first.errors] == [("quota", "c.example.test", 81045)]
        # Next change: a goes, d comes. The refused c is left out, so the change is one batch that Cloudflare takes.
        next_job = zone_job("example.test", ["b.example.test", "c.example.test", "d.example.test"], "v2")
        await send(redis, keys, [next_job])
        await drain(svc)
        assert (two_zones.emulator.count(BATCH), two_zones.emulator.count(SINGLE_POST)) == (2, 3), (
            "the zone's next change must cost one batch call, not another fallback to single calls"
        )
        assert names_in(two_zones, EXAMPLE) == {"b.example.test", "d.example.test"}
        second = (await job_results(redis, keys))[-1]
        assert [(e.hostname, e.code) for e in second.errors] == [("c.example.test", 81045)], "still reported"
        # The drift check retries what was refused: with room in the zone, c is written.
        two_zones.emulator.configure(record_quota=3)
        await send(redis, keys, [VerifyTarget(target="zone:example.test")])
        await drain(svc)
        assert names_in(two_zones, EXAMPLE) == {"b.example.test", "c.example.test", "d.example.test"}
        verify = (await job_results(redis, keys))[-1]
        assert verify.ok and not verify.errors
    finally:
        await svc.close()


async def test_a_refusal_that_says_nothing_about_the_record_is_not_remembered(
    two_zones: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # A 403 (a token that lost its write permission for a moment) refuses the batch: the job fails naming the
    # permission, without a single call per record (each would be refused the same way) and without remembering
    # anything about the records.
    two_zones.emulator.set_faults([{"endpoint": BATCH, "sequence": [403]}])
    svc = service(settings_for(redis_server.url, prefix, two_zones), redis)
    try:
        await send(redis, keys, [zone_job("example.test", ["a.example.test", "b.example.test"], "v1")])
        await drain(svc)
        assert names_in(two_zones, EXAMPLE) == set()
        [first] = await job_results(redis, keys)
        assert not first.ok and [e.kind for e in first.errors] == ["permission"]
        assert "Zone > DNS > Edit" in first.errors[0].message
        # The next change carries a and b again, in its one batch call: nothing about them was refused.
        await send(
            redis, keys, [zone_job("example.test", ["a.example.test", "b.example.test", "c.example.test"], "v2")]
        )
        await drain(svc)
        assert names_in(two_zones, EXAMPLE) == {"a.example.test", "b.example.test", "c.example.test"}
        assert (two_zones.emulator.count(BATCH), two_zones.emulator.count(SINGLE_POST)) == (2, 0)
    finally:
        await svc.close()
