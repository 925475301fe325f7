"""Zones: list filters and pagination past one page, through both SDK clients."""

from __future__ import annotations

import asyncio

import cloudflare
import pytest

from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, RunningEmulator


def _seed_zones(cfemu: RunningEmulator, count: int) -> None:
    cfemu.emulator.seed({"zones": [{"name": f"zone{i:03}.test", "account_id": ACCOUNT_ID} for i in range(count)]})


async def test_auto_pagination_sees_every_zone_past_the_50_per_page_cap(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    _seed_zones(cfemu, 60)
    names = [zone.name async for zone in acf.zones.list(per_page=50)]
    assert len(names) == 61
    assert len(set(names)) == 61
    # Cloudflare caps zone pages at 50, so 61 zones take two pages plus the empty page that ends the loop.
    assert cfemu.emulator.count("GET /zones") == 3


async def test_page_size_outside_cloudflares_bounds_is_refused(acf: cloudflare.AsyncCloudflare) -> None:
    with pytest.raises(cloudflare.BadRequestError) as refused:
        await acf.zones.list(per_page=1000)
    assert "per_page must be between 5 and 50" in str(refused.value)
    page = await acf.zones.list(per_page=50)
    assert page.result_info is not None and page.result_info.per_page == 50


async def test_zone_filters_by_name_account_and_status(cfemu: RunningEmulator, scf: cloudflare.Cloudflare) -> None:
    cfemu.emulator.seed(
        {
            "accounts": [{"id": "a" * 32, "name": "other"}],
            "zones": [
                {"name": "other.test", "account_id": "a" * 32},
                {"name": "pending.test", "account_id": ACCOUNT_ID, "status": "pending"},
            ],
        }
    )

    def names(**filters: object) -> list[str]:
        return sorted(z.name for z in scf.zones.list(**filters))  # type: ignore[arg-type]

    assert await asyncio.to_thread(names, name="example.com") == ["example.com"]
    assert await asyncio.to_thread(names, account={"id": "a" * 32}) == ["other.test"]
    assert await asyncio.to_thread(names, status="pending") == ["pending.test"]
    assert await asyncio.to_thread(names, name="contains:test") == ["other.test", "pending.test"]


async def test_get_zone_returns_cloudflare_fields(acf: cloudflare.AsyncCloudflare) -> None:
    zone = await acf.zones.get(zone_id=ZONE_ID)
    assert zone is not None
    assert (zone.id, zone.name, zone.status) == (ZONE_ID, "example.com", "active")
    assert zone.account.id == ACCOUNT_ID
    assert zone.plan.name == "Free Website"
