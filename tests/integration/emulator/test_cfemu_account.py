"""Account members (with roles) and Access identity providers: seeded with the owner and a One-time PIN login
method, read through the official SDK, the login method removable as in the dashboard."""

from __future__ import annotations

from typing import Any

import cloudflare
import pytest

from flareport_cfemu.testing import ACCOUNT_ID, RunningEmulator, start_emulator


async def test_a_seeded_account_has_its_owner_and_a_one_time_pin_login_method(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    members = [m async for m in acf.accounts.members.list(account_id=ACCOUNT_ID)]
    assert [(m.email, m.status) for m in members] == [("owner@example.com", "accepted")]
    [role] = members[0].roles or []
    assert role.name == "Super Administrator - All Privileges"
    assert role.permissions is not None and role.permissions.analytics is not None and role.permissions.analytics.read

    idps: Any = acf.zero_trust.identity_providers
    listed = [p async for p in idps.list(account_id=ACCOUNT_ID)]
    assert [(p.type, p.name) for p in listed] == [("onetimepin", "One-time PIN")]
    await idps.delete(listed[0].id, account_id=ACCOUNT_ID)
    assert [p async for p in idps.list(account_id=ACCOUNT_ID)] == []
    with pytest.raises(cloudflare.NotFoundError):
        await idps.get(listed[0].id, account_id=ACCOUNT_ID)


async def test_members_and_login_methods_come_from_the_seed() -> None:
    seed = {
        "accounts": [{"id": ACCOUNT_ID, "name": "t", "owner_email": "boss@corp.test", "one_time_pin": False}],
        "account_members": [{"email": "ops@corp.test", "roles": [{"name": "Administrator"}], "status": "pending"}],
        "access_identity_providers": [{"name": "GitHub", "type": "github", "config": {"client_id": "x"}}],
    }
    running = await start_emulator(seed=seed)
    try:
        async with running.async_client() as client:
            members = [m async for m in client.accounts.members.list(account_id=ACCOUNT_ID, per_page=5)]
            assert [m.email for m in members] == ["boss@corp.test", "ops@corp.test"]
            idps: Any = client.zero_trust.identity_providers
            assert [p.type async for p in idps.list(account_id=ACCOUNT_ID)] == ["github"]
            with pytest.raises(cloudflare.BadRequestError, match="per_page"):
                await client.get(
                    f"/accounts/{ACCOUNT_ID}/members", options={"params": {"per_page": 51}}, cast_to=object
                )
    finally:
        await running.stop()
