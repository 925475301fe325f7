"""The per-token fixed-window rate limit: 429 with Retry-After, then OK once the window ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import cloudflare
import httpx
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ZONE_ID


async def test_budget_exhausted_gives_429_then_the_next_window_is_ok(emulator_factory: Any) -> None:
    running = await emulator_factory(EmulatorConfig(rate_limit=3, rate_window_seconds=1.0))
    async with running.async_client() as acf:
        for _ in range(3):
            await acf.zones.get(zone_id=ZONE_ID)
        with pytest.raises(cloudflare.RateLimitError) as caught:
            await acf.zones.get(zone_id=ZONE_ID)
        assert caught.value.response.headers["Retry-After"] == "1"
        body: Any = caught.value.body
        assert body["errors"] == [{"code": 971, "message": "Please wait and consider throttling your request speed"}]

        async with running.async_client(token="another-token") as other:
            assert await other.zones.get(zone_id=ZONE_ID) is not None, "each token has its own budget"

        deadline = time.monotonic() + 5
        while True:
            try:
                zone = await acf.zones.get(zone_id=ZONE_ID)
                break
            except cloudflare.RateLimitError:
                assert time.monotonic() < deadline, "the window never reopened"
                await asyncio.sleep(0.05)
    assert zone is not None and zone.id == ZONE_ID
    assert running.emulator.log.status_counters["GET /zones/{zone_id} 429"] >= 1


async def test_rate_limit_can_be_changed_at_runtime(emulator_factory: Any) -> None:
    running = await emulator_factory()
    running.emulator.configure(rate_limit=1, rate_window_seconds=60)
    async with running.async_client() as acf:
        await acf.zones.get(zone_id=ZONE_ID)
        with pytest.raises(cloudflare.RateLimitError) as caught:
            await acf.zones.get(zone_id=ZONE_ID)
    assert 55 <= int(caught.value.response.headers["Retry-After"]) <= 60


async def test_more_requests_per_second_from_one_address_than_allowed_get_429(emulator_factory: Any) -> None:
    # Cloudflare's per-IP limit (200 a second), scaled down: the token's window has room, the address has not.
    running = await emulator_factory(EmulatorConfig(address_rate_limit=5, rate_limit=1200, rate_window_seconds=300))
    async with running.async_client() as acf, running.async_client(token="another-token") as other:
        started = time.monotonic()
        for client in (acf, other, acf, other, acf):
            await client.zones.get(zone_id=ZONE_ID)
        with pytest.raises(cloudflare.RateLimitError) as caught:
            await acf.zones.get(zone_id=ZONE_ID)  # another token does not help: the address is the same
        assert time.monotonic() - started < 1.0, "the five requests must fall within one second for this test"
        assert caught.value.response.headers["Retry-After"] == "1"
        body: Any = caught.value.body
        assert body["errors"][0]["code"] == 971
        deadline = time.monotonic() + 5
        while True:  # a second after the first request, the address may call again
            try:
                await other.zones.get(zone_id=ZONE_ID)
                break
            except cloudflare.RateLimitError:
                assert time.monotonic() < deadline, "the address never got its requests back"
                await asyncio.sleep(0.05)
    assert running.emulator.limiter.usage("another-token") == 3, "a refused request spends no token budget"


async def test_the_per_address_limit_can_be_turned_off_at_runtime(emulator_factory: Any) -> None:
    running = await emulator_factory(EmulatorConfig(address_rate_limit=2))
    running.emulator.configure(address_rate_limit=0)
    async with running.async_client() as acf:
        for _ in range(10):
            await acf.zones.get(zone_id=ZONE_ID)
    assert running.emulator.log.status_counters["GET /zones/{zone_id} 200"] == 10


async def test_every_answer_reports_the_token_s_standing_in_cloudflare_s_headers(emulator_factory: Any) -> None:
    running = await emulator_factory(EmulatorConfig(rate_limit=3, rate_window_seconds=60))
    async with running.async_client() as acf:
        first = await acf.zones.with_raw_response.get(zone_id=ZONE_ID)
        assert first.headers["Ratelimit"] == '"default";r=2;t=60', "two left of three, the whole window ahead"
        assert first.headers["Ratelimit-Policy"] == '"default";q=3;w=60'
        await acf.zones.get(zone_id=ZONE_ID)
        third = await acf.zones.with_raw_response.get(zone_id=ZONE_ID)
        assert third.headers["Ratelimit"].startswith('"default";r=0;t=')
        with pytest.raises(cloudflare.RateLimitError) as caught:
            await acf.zones.get(zone_id=ZONE_ID)
        assert caught.value.response.headers["Ratelimit"].startswith('"default";r=0;t='), "a refusal reports it too"
        async with running.async_client(token="another-token") as other:
            fresh = await other.zones.with_raw_response.get(zone_id=ZONE_ID)
            assert fresh.headers["Ratelimit"] == '"default";r=2;t=60', "each token has its own standing"
    async with httpx.AsyncClient() as anonymous:
        refused = await anonymous.get(f"{running.base_url}/zones/{ZONE_ID}")
    assert refused.status_code == 401
    assert "Ratelimit" not in refused.headers, "nothing is counted for a request without a token"
