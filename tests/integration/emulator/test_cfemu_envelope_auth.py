"""Envelope, authentication and routing errors, as a client of Cloudflare sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import cloudflare
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ZONE_ID, RunningEmulator

StartEmulator = Callable[..., Awaitable[RunningEmulator]]


async def test_request_without_token_is_401_with_cloudflare_error_shape(cfemu: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as http, http.get(cfemu.base_url + "/zones") as response:
        body = await response.json()
    assert response.status == 401
    assert body == {
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
        "messages": [],
        "result": None,
    }


async def test_wrong_token_is_rejected_when_a_token_is_configured(emulator_factory: StartEmulator) -> None:
    running = await emulator_factory(EmulatorConfig(token="the-right-one"))
    async with running.async_client(token="a-wrong-one") as wrong:
        with pytest.raises(cloudflare.AuthenticationError) as caught:
            await wrong.zones.get(zone_id=ZONE_ID)
    assert caught.value.status_code == 401
    async with running.async_client(token="the-right-one") as right:
        zone = await right.zones.get(zone_id=ZONE_ID)
    assert zone is not None and zone.id == ZONE_ID


async def test_unknown_route_is_a_404_envelope_with_code_7000(cfemu: RunningEmulator) -> None:
    headers = {"Authorization": "Bearer t"}
    async with aiohttp.ClientSession(headers=headers) as http, http.get(cfemu.base_url + "/nope/here") as response:
        body = await response.json()
    assert response.status == 404
    assert body["success"] is False
    assert body["errors"][0]["code"] == 7000


async def test_unknown_zone_id_raises_not_found_with_code_7003(acf: cloudflare.AsyncCloudflare) -> None:
    with pytest.raises(cloudflare.NotFoundError) as caught:
        await acf.dns.records.list(zone_id="0" * 32)
    assert caught.value.status_code == 404
    assert "7003" in str(caught.value.body)


async def test_malformed_json_body_is_a_400(cfemu: RunningEmulator) -> None:
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    url = f"{cfemu.base_url}/zones/{ZONE_ID}/dns_records"
    async with aiohttp.ClientSession(headers=headers) as http, http.post(url, data=b"{not json") as response:
        body = await response.json()
    assert response.status == 400
    assert body["success"] is False and body["errors"][0]["code"] == 1001


async def test_wrong_method_on_a_known_route_is_405(cfemu: RunningEmulator) -> None:
    headers = {"Authorization": "Bearer t"}
    async with aiohttp.ClientSession(headers=headers) as http, http.delete(cfemu.base_url + "/zones") as response:
        body = await response.json()
    assert response.status == 405
    assert body["errors"][0]["code"] == 7001


async def test_sync_client_works_from_a_thread(cfemu: RunningEmulator, scf: cloudflare.Cloudflare) -> None:
    zone = await asyncio.to_thread(scf.zones.get, zone_id=ZONE_ID)
    assert zone is not None and zone.name == "example.com"
    with pytest.raises(cloudflare.NotFoundError):
        await asyncio.to_thread(scf.zones.get, zone_id="1" * 32)
