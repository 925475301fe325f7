"""Token verification and per-token permissions: ``/user/tokens/verify``, ``/accounts/{id}/tokens/verify`` and a
registered token's status, expiry and scope, read through the official SDK."""

from __future__ import annotations

from typing import Any

import aiohttp
import cloudflare
import pytest

from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, RunningEmulator


async def register(emu: RunningEmulator, **token: Any) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(emu.root_url + "/__emulator/tokens", json=token) as response,
    ):
        assert response.status == 200, await response.text()


async def test_an_unregistered_token_is_an_active_user_token_with_every_permission(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    verified = await acf.user.tokens.verify()
    assert verified is not None and verified.status == "active" and verified.expires_on is None
    assert len(verified.id) == 32
    await acf.dns.records.create(zone_id=ZONE_ID, name="app", type="A", content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.AuthenticationError):  # 401: a user token is not an account API token
        await acf.accounts.tokens.verify(account_id=ACCOUNT_ID)


async def test_a_token_without_a_permission_is_refused_with_403_and_edit_implies_read(cfemu: RunningEmulator) -> None:
    await register(cfemu, token="dns-read", permissions=["Zone > DNS > Read", "Account > Cloudflare Tunnel > Edit"])
    async with cfemu.async_client(token="dns-read") as cf:
        assert [r async for r in cf.dns.records.list(zone_id=ZONE_ID)] == []
        with pytest.raises(cloudflare.PermissionDeniedError) as refused:
            await cf.dns.records.create(zone_id=ZONE_ID, name="app", type="A", content="192.0.2.1", ttl=1)
        assert refused.value.status_code == 403
        assert refused.value.body["errors"][0]["code"] == 10000  # type: ignore[index]
        with pytest.raises(cloudflare.PermissionDeniedError):
            await cf.zones.get(zone_id=ZONE_ID)  # no Zone > Zone > Read
        assert [t async for t in cf.zero_trust.tunnels.cloudflared.list(account_id=ACCOUNT_ID)] == []  # Edit reads
        with pytest.raises(cloudflare.PermissionDeniedError):
            await cf.accounts.members.list(account_id=ACCOUNT_ID)
        verified = await cf.user.tokens.verify()  # verifying needs no permission
        assert verified is not None and verified.status == "active"


async def test_an_account_api_token_verifies_only_at_its_account(cfemu: RunningEmulator) -> None:
    await register(cfemu, token="acct", owner="account", account_id=ACCOUNT_ID, expires_on="2999-01-01T00:00:00Z")
    async with cfemu.async_client(token="acct") as cf:
        verified = await cf.accounts.tokens.verify(account_id=ACCOUNT_ID)
        assert verified is not None and verified.status == "active"
        assert verified.expires_on is not None and verified.expires_on.year == 2999
        with pytest.raises(cloudflare.AuthenticationError) as user:
            await cf.user.tokens.verify()
        assert user.value.body["errors"][0]["code"] == 1000  # type: ignore[index]
        with pytest.raises(cloudflare.AuthenticationError):
            await cf.accounts.tokens.verify(account_id="f" * 32)


async def test_a_disabled_or_expired_token_verifies_with_its_status_and_is_refused_elsewhere(
    cfemu: RunningEmulator,
) -> None:
    await register(cfemu, token="off", status="disabled")
    await register(cfemu, token="old", expires_on="2020-01-01T00:00:00Z")
    for token, status in (("off", "disabled"), ("old", "expired")):
        async with cfemu.async_client(token=token) as cf:
            verified = await cf.user.tokens.verify()
            assert verified is not None and verified.status == status
            with pytest.raises(cloudflare.AuthenticationError):
                await cf.zones.get(zone_id=ZONE_ID)


async def test_bad_token_registrations_are_refused(cfemu: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        for body in ({"token": ""}, {"token": "x", "status": "paused"}, {"token": "x", "owner": "account"}):
            async with session.post(cfemu.root_url + "/__emulator/tokens", json=body) as response:
                assert response.status == 400
        async with session.get(cfemu.root_url + "/__emulator/tokens") as response:
            assert (await response.json())["result"] == []
