"""The contract checks catch a drift from the official SDK's types, on both sides of the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import cloudflare
import pytest

from flareport_cfemu.contracts import CHECKER, ContractChecker, check_value
from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, RunningEmulator, start_emulator


@pytest.fixture
async def strict() -> AsyncIterator[tuple[RunningEmulator, ContractChecker]]:
    """An emulator whose checks are strict and whose violations stay in memory (the suite's log would fail us)."""
    emu = await start_emulator()
    checker = emu.runner.app[CHECKER]
    checker.mode, checker.log_path = "strict", None
    yield emu, checker
    await emu.stop()


async def test_a_request_field_the_sdk_does_not_have_is_refused_naming_it_and_the_type(
    strict: tuple[RunningEmulator, ContractChecker],
) -> None:
    emu, checker = strict
    async with emu.async_client() as cf:
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await cf.dns.records.create(
                zone_id=ZONE_ID, name="a", type="A", content="192.0.2.1", ttl=1, extra_body={"proxy": True}
            )
        assert "body.proxy: unknown field, not in cloudflare.types.dns.record_create_params.ARecord" in str(
            caught.value
        )
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await cf.zero_trust.tunnels.cloudflared.create(
                account_id=ACCOUNT_ID, name="t", config_src=cast(Any, "remote")
            )
        assert "body.config_src: 'remote' is not one of ['local', 'cloudflare']" in str(caught.value)
        with pytest.raises(cloudflare.BadRequestError):
            await cf.dns.records.list(zone_id=ZONE_ID, extra_query={"hostname": "a.example.com"})
        # A request that keeps to the SDK's types goes through, and nothing was written by the refused ones.
        await cf.dns.records.create(zone_id=ZONE_ID, name="a", type="A", content="192.0.2.1", ttl=1)
    assert [v["side"] for v in checker.violations] == ["request"] * 3
    assert checker.violations[2]["problems"] == [
        "query hostname: unknown parameter, not in cloudflare.types.dns.record_list_params.RecordListParams"
    ]
    assert [r["name"] for r in emu.emulator.state.dns_records[ZONE_ID].values()] == ["a.example.com"]


async def test_a_response_missing_a_required_field_or_with_an_undeclared_one_is_a_violation(
    strict: tuple[RunningEmulator, ContractChecker],
) -> None:
    emu, checker = strict
    async with emu.async_client() as cf:
        record = await cf.dns.records.create(zone_id=ZONE_ID, name="a", type="A", content="192.0.2.1", ttl=1)
        assert record is not None
        stored = emu.emulator.state.dns_records[ZONE_ID][record.id]
        del stored["proxiable"]  # the emulator drifts: a field the SDK's model requires goes missing
        stored["zone_name"] = "example.com"  # and one Cloudflare removed comes back
        await cf.dns.records.get(record.id, zone_id=ZONE_ID)
        stored["proxiable"] = True
        await cf.dns.records.get(record.id, zone_id=ZONE_ID)
    violation, extra = checker.violations
    assert extra["problems"] == ["result.zone_name: not a field of cloudflare.types.dns.record_response.ARecord"]
    assert (
        violation["side"] == "response" and violation["endpoint"] == "GET /zones/{zone_id}/dns_records/{dns_record_id}"
    )
    assert violation["sdk_type"] == "cloudflare.types.dns.record_response.RecordResponse"
    assert violation["problems"] == ["result.proxiable: Field required (RecordResponse: ARecord)"], violation
    async with aiohttp.ClientSession() as session, session.get(emu.root_url + "/__emulator/contracts") as response:
        assert (await response.json())["total"] == 2


def test_the_catch_all_rule_and_inline_app_policies_are_the_documented_exceptions() -> None:
    from cloudflare.types.zero_trust.access.application_create_params import ApplicationCreateParams

    app = {"type": "self_hosted", "domain": "a.example.com", "policies": [{"name": "p", "decision": "allow"}]}
    assert check_value(app, ApplicationCreateParams, "body") == []
    app["policies"] = [{"name": "p", "decision": "maybe"}]
    assert check_value(app, ApplicationCreateParams, "body")
