"""The emulator is at least as strict as Cloudflare where a lenient answer would hide a bug: tunnel connections
that block a delete (and linger after the connector stops), duplicate Access tags, the record quota of new Free
zones, page sizes past an endpoint's bounds, lists without ``total_pages``, and errors nested in ``error_chain``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import cloudflare
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, RunningEmulator

TUNNELS = f"/accounts/{ACCOUNT_ID}/cfd_tunnel"


async def _api(cfemu: RunningEmulator, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": "Bearer test-token"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, cfemu.base_url + path, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json()


async def _tunnel(cfemu: RunningEmulator, name: str) -> str:
    status, body = await _api(cfemu, "POST", TUNNELS, json={"name": name, "config_src": "cloudflare"})
    assert status == 200, body
    return str(body["result"]["id"])


async def test_a_connected_tunnel_refuses_delete_unless_cascaded(cfemu: RunningEmulator) -> None:
    tunnel_id = await _tunnel(cfemu, "busy")
    async with cfemu.control() as control:
        client_id = await control.connect_tunnel(tunnel_id, connections=2)

    status, body = await _api(cfemu, "GET", f"{TUNNELS}/{tunnel_id}/connections")
    assert status == 200
    assert [c["id"] for c in body["result"]] == [client_id]
    assert [c["is_pending_reconnect"] for c in body["result"][0]["conns"]] == [False, False]

    status, body = await _api(cfemu, "DELETE", f"{TUNNELS}/{tunnel_id}")
    assert status == 400 and body["errors"][0]["code"] == 1022
    assert "active connections" in body["errors"][0]["message"]
    # Cleaning connections does not take a running connector's away: it would register them again at once.
    status, _ = await _api(cfemu, "DELETE", f"{TUNNELS}/{tunnel_id}/connections")
    assert status == 200
    status, body = await _api(cfemu, "DELETE", f"{TUNNELS}/{tunnel_id}")
    assert status == 400 and body["errors"][0]["code"] == 1022

    status, body = await _api(cfemu, "DELETE", f"{TUNNELS}/{tunnel_id}", params={"cascade": "true"})
    assert status == 200 and body["result"]["deleted_at"] is not None


async def test_connections_linger_after_the_connector_stops_until_cleaned_or_expired(
    emulator_factory: Any,
) -> None:
    cfemu = await emulator_factory(EmulatorConfig(connection_linger_seconds=0.5))
    first, second = await _tunnel(cfemu, "first"), await _tunnel(cfemu, "second")
    async with cfemu.control() as control:
        for tunnel_id in (first, second):
            await control.connect_tunnel(tunnel_id)
            assert await control.disconnect_tunnel(tunnel_id) == 1

    status, body = await _api(cfemu, "GET", f"{TUNNELS}/{first}/connections")
    assert {c["is_pending_reconnect"] for c in body["result"][0]["conns"]} == {True}
    status, body = await _api(cfemu, "DELETE", f"{TUNNELS}/{first}")
    assert status == 400 and body["errors"][0]["code"] == 1022

    # Cleaned up: the lingering connections go, the delete goes through.
    assert (await _api(cfemu, "DELETE", f"{TUNNELS}/{first}/connections"))[0] == 200
    assert (await _api(cfemu, "DELETE", f"{TUNNELS}/{first}"))[0] == 200

    # Left alone: refused until the linger has passed.
    deadline = time.monotonic() + 10
    while (status := (await _api(cfemu, "DELETE", f"{TUNNELS}/{second}"))[0]) != 200:
        assert status == 400 and time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_the_linger_is_tunable_through_the_control_api(cfemu: RunningEmulator) -> None:
    async with cfemu.control() as control:
        assert (await control.configure(connection_linger_seconds=0))["connection_linger_seconds"] == 0
        tunnel_id = await _tunnel(cfemu, "short")
        await control.connect_tunnel(tunnel_id)
        await control.disconnect_tunnel(tunnel_id)
    assert (await _api(cfemu, "DELETE", f"{TUNNELS}/{tunnel_id}"))[0] == 200


async def test_a_duplicate_access_tag_is_a_409(acf: cloudflare.AsyncCloudflare) -> None:
    await acf.zero_trust.access.tags.create(account_id=ACCOUNT_ID, name="flareport")
    with pytest.raises(cloudflare.ConflictError):
        await acf.zero_trust.access.tags.create(account_id=ACCOUNT_ID, name="flareport")


async def test_new_free_zones_hold_200_records_older_and_paid_zones_more(cfemu: RunningEmulator) -> None:
    new_free, old_free, pro = "1" * 32, "2" * 32, "3" * 32
    cfemu.emulator.seed(
        {
            "zones": [
                {"id": new_free, "name": "new.test", "created_on": "2025-02-01T00:00:00.000000Z"},
                {"id": old_free, "name": "old.test", "created_on": "2024-08-31T00:00:00.000000Z"},
                {"id": pro, "name": "pro.test", "plan": "pro", "created_on": "2025-02-01T00:00:00.000000Z"},
            ]
        }
    )
    for zone_id in (new_free, old_free, pro):
        posts = [{"name": f"r{i}", "type": "A", "content": "192.0.2.1", "ttl": 1} for i in range(200)]
        status, body = await _api(cfemu, "POST", f"/zones/{zone_id}/dns_records/batch", json={"posts": posts})
        assert status == 200, body
        status, body = await _api(
            cfemu,
            "POST",
            f"/zones/{zone_id}/dns_records",
            json={"name": "one-more", "type": "A", "content": "192.0.2.2"},
        )
        if zone_id == new_free:
            assert status == 400 and body["errors"][0]["code"] == 81045
            assert "at most 200 records" in body["errors"][0]["message"]
        else:
            assert status == 200, body


async def test_page_sizes_past_the_bounds_are_refused_not_clamped(cfemu: RunningEmulator) -> None:
    for path, per_page in ((TUNNELS, 1001), (f"/accounts/{ACCOUNT_ID}/access/apps", 51), ("/zones", 51)):
        status, body = await _api(cfemu, "GET", path, params={"per_page": str(per_page)})
        assert status == 400, (path, body)
        assert "per_page must be between" in body["errors"][0]["message"]
    status, _ = await _api(cfemu, "GET", f"/zones/{ZONE_ID}/dns_records", params={"per_page": "5000000"})
    assert status == 200


async def test_the_tunnel_list_has_no_total_pages(cfemu: RunningEmulator) -> None:
    for i in range(3):
        await _tunnel(cfemu, f"t{i}")
    status, body = await _api(cfemu, "GET", TUNNELS, params={"per_page": "2"})
    assert status == 200 and len(body["result"]) == 2
    assert body["result_info"] == {"page": 1, "per_page": 2, "count": 2}


async def test_a_fault_can_answer_any_code_with_an_error_chain(cfemu: RunningEmulator) -> None:
    async with cfemu.control() as control:
        await control.add_faults(
            {
                "endpoint": "POST /zones/{zone_id}/dns_records",
                "sequence": [400],
                "error_code": 1004,
                "error_message": "DNS Validation Error",
                "error_chain": [{"code": 81057, "message": "The record already exists."}],
            },
            {"endpoint": "GET /zones", "sequence": [403], "error_code": 9109, "error_message": "Unauthorized"},
        )
    status, body = await _api(cfemu, "POST", f"/zones/{ZONE_ID}/dns_records", json={"name": "a", "type": "A"})
    assert status == 400
    assert body["errors"] == [
        {
            "code": 1004,
            "message": "DNS Validation Error",
            "error_chain": [{"code": 81057, "message": "The record already exists."}],
        }
    ]
    status, body = await _api(cfemu, "GET", "/zones")
    assert status == 403 and body["errors"] == [{"code": 9109, "message": "Unauthorized"}]
