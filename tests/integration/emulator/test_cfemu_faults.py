"""Fault injection: status sequences, error rates, latency, late arrivals and dropped connections."""

from __future__ import annotations

import asyncio
import time

import cloudflare
import pytest

from flareport_cfemu.testing import ZONE_ID, RunningEmulator
from fptest.waiting import already, wait_for

ZONE = "GET /zones/{zone_id}"


async def test_status_sequence_is_served_in_order(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    cfemu.emulator.add_fault({"endpoint": ZONE, "sequence": [500, 429, 200]})
    with pytest.raises(cloudflare.InternalServerError):
        await acf.zones.get(zone_id=ZONE_ID)
    with pytest.raises(cloudflare.RateLimitError) as limited:
        await acf.zones.get(zone_id=ZONE_ID)
    assert limited.value.response.headers["Retry-After"] == "1"
    assert await acf.zones.get(zone_id=ZONE_ID) is not None
    assert await acf.zones.get(zone_id=ZONE_ID) is not None, "an exhausted sequence stops failing"
    statuses = [r["status"] for r in cfemu.emulator.requests()["requests"]]
    assert statuses == [500, 429, 200, 200]


async def test_sdk_retries_through_a_sequence_and_the_log_counts_every_attempt(cfemu: RunningEmulator) -> None:
    cfemu.emulator.add_fault({"endpoint": ZONE, "sequence": [503, 503], "retry_after": 0})
    async with cfemu.async_client(max_retries=2) as acf:
        zone = await acf.zones.get(zone_id=ZONE_ID)
    assert zone is not None
    assert cfemu.emulator.count(ZONE) == 3


async def test_faults_only_hit_their_endpoint(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    cfemu.emulator.add_fault({"endpoint": "POST /zones/{zone_id}/dns_records", "error_rate": 1.0, "error_status": 502})
    assert [z.id async for z in acf.zones.list()] == [ZONE_ID]
    with pytest.raises(cloudflare.APIStatusError) as caught:
        await acf.dns.records.create(zone_id=ZONE_ID, name="x", type="A", content="192.0.2.1", ttl=1)
    assert caught.value.status_code == 502
    assert cfemu.emulator.state.dns_records[ZONE_ID] == {}, "an injected failure must not apply the write"
    cfemu.emulator.clear_faults()
    assert await acf.dns.records.create(zone_id=ZONE_ID, name="x", type="A", content="192.0.2.1", ttl=1)


async def test_injected_latency_is_measurable(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    await acf.zones.get(zone_id=ZONE_ID)
    started = time.perf_counter()
    await acf.zones.get(zone_id=ZONE_ID)
    baseline = time.perf_counter() - started
    cfemu.emulator.add_fault({"endpoint": "*", "latency_ms": 300})
    started = time.perf_counter()
    await acf.zones.get(zone_id=ZONE_ID)
    slowed = time.perf_counter() - started
    assert slowed >= 0.3
    assert slowed - baseline >= 0.25


async def test_dropped_connection_raises_api_connection_error(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    cfemu.emulator.add_fault({"endpoint": ZONE, "sequence": ["drop"]})
    with pytest.raises(cloudflare.APIConnectionError):
        await acf.zones.get(zone_id=ZONE_ID)
    assert await acf.zones.get(zone_id=ZONE_ID) is not None
    assert [r["status"] for r in cfemu.emulator.requests()["requests"]] == [0, 200]


async def test_faults_are_configurable_over_http(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    async with cfemu.control() as control:
        rules = await control.add_faults({"endpoint": ZONE, "sequence": [500]})
        assert rules[0]["endpoint"] == ZONE
        with pytest.raises(cloudflare.InternalServerError):
            await acf.zones.get(zone_id=ZONE_ID)
        assert (await control.faults())[0]["fired"] == 1
        await control.clear_faults()
        assert await control.faults() == []
        with pytest.raises(Exception, match="sequence steps"):
            await control.add_faults({"endpoint": ZONE, "sequence": ["boom"]})


async def test_a_late_arrival_is_counted_by_the_address_limit_when_it_arrives(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    cfemu.emulator.configure(address_rate_limit=2)
    rule = cfemu.emulator.add_fault({"endpoint": ZONE, "arrival_delay_ms": 500, "times": 2})
    late = [asyncio.create_task(acf.zones.get(zone_id=ZONE_ID)) for _ in range(2)]
    await wait_for(lambda: already(rule.fired == 2), timeout=5, what="both late requests on their way")
    # Still on their way: they do not count yet, so the address's two requests this second go through.
    assert [await acf.zones.get(zone_id=ZONE_ID) is not None for _ in range(2)] == [True, True]
    outcomes = await asyncio.gather(*late, return_exceptions=True)
    assert all(isinstance(o, cloudflare.RateLimitError) for o in outcomes), (
        f"arriving within a second of the two others, both late requests are over the limit: {outcomes}"
    )


async def test_an_arrival_delay_does_nothing_else(cfemu: RunningEmulator) -> None:
    with pytest.raises(ValueError, match="arrival_delay_ms must not fail, drop or slow"):
        cfemu.emulator.add_fault({"endpoint": ZONE, "arrival_delay_ms": 100, "latency_ms": 100})
    with pytest.raises(ValueError, match="arrival_delay_ms must not be negative"):
        cfemu.emulator.add_fault({"endpoint": ZONE, "arrival_delay_ms": -1})
