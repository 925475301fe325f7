"""Optional OpenID Connect single sign-on against a fake provider: allowed and refused emails, a replayed or
forged callback, a tampered ID token, password login turned off (only possible with OIDC), and its warning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_common.errors import SettingsError
from flareport_common.keys import Keys
from flareport_common.settings import ApiSettings, load_api
from fptest.api_helpers import MASTER
from fptest.api_oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeProvider

from .conftest import PASSWORD, Ui


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    server = TestServer(fake.app())
    await server.start_server()
    fake.issuer = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


def _sso(settings: ApiSettings, provider: FakeProvider, **overrides: Any) -> ApiSettings:
    return replace(
        settings,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_allowed_emails=("alice@example.com",),
        oidc_allowed_domains=("ops.example.org",),
        **overrides,
    )


async def _client(settings: ApiSettings, keys: Keys, redis: aioredis.Redis) -> Ui:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return Ui(client=client, keys=keys, redis=redis)


async def _sign_in(ui: Ui) -> Any:
    """Follow the redirects by hand: UI -> provider -> UI callback; returns the callback's answer."""
    start = await ui.client.get("/ui/login/oidc?next=/ui/agents", allow_redirects=False)
    assert start.status == 302, await start.text()
    at_provider = await ui.client.session.get(start.headers["Location"], allow_redirects=False)
    assert at_provider.status == 302
    return await ui.client.session.get(at_provider.headers["Location"], allow_redirects=False)


async def test_an_allowed_email_signs_in_and_lands_on_the_page_it_asked_for(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        assert "Sign in with single sign-on" in await (await ui.client.get("/ui/login")).text()
        done = await _sign_in(ui)
        assert done.status == 302 and done.headers["Location"] == "/ui/agents"
        page = await ui.client.get("/ui/settings", allow_redirects=False)
        assert page.status == 200
        assert "alice@example.com via single sign-on" in await page.text()

        provider.next_email = "bob@ops.example.org"  # allowed by domain
        ui.client.session.cookie_jar.clear()
        assert (await _sign_in(ui)).status == 302
    finally:
        await ui.client.close()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"next_email": "mallory@example.com"}, "not allowed"),
        ({"email_verified": False}, "verified email"),
        ({"tamper": {"aud": "another-client"}}, "did not verify"),
        ({"tamper": {"nonce": "replayed"}}, "did not verify"),
        ({"tamper": {"iss": "https://evil.example"}}, "did not verify"),
    ],
)
async def test_sign_in_is_refused(
    settings: ApiSettings,
    provider: FakeProvider,
    keys: Keys,
    redis: aioredis.Redis,
    change: dict[str, Any],
    reason: str,
) -> None:
    for name, value in change.items():
        setattr(provider, name, value)
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        refused = await _sign_in(ui)
        assert refused.status == 403
        assert reason in await refused.text()
        assert (await ui.client.get("/ui/", allow_redirects=False)).status == 302, "no session"
    finally:
        await ui.client.close()


async def test_a_callback_works_once_and_a_forged_state_never(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        start = await ui.client.get("/ui/login/oidc", allow_redirects=False)
        at_provider = await ui.client.session.get(start.headers["Location"], allow_redirects=False)
        callback = at_provider.headers["Location"]
        assert (await ui.client.session.get(callback, allow_redirects=False)).status == 302
        ui.client.session.cookie_jar.clear()
        replayed = await ui.client.session.get(callback, allow_redirects=False)
        assert replayed.status == 403
        forged = await ui.client.get("/ui/login/oidc/callback?code=x&state=guessed", allow_redirects=False)
        assert forged.status == 403
    finally:
        await ui.client.close()


async def test_password_login_off_leaves_only_sso_and_shows_the_warning(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    ui = await _client(_sso(settings, provider, ui_password_login=False), keys, redis)
    try:
        login = await (await ui.client.get("/ui/login")).text()
        assert 'name="password"' not in login
        token = ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/"))["fp_login_csrf"].value
        data = {"csrf": token, "username": "admin", "password": PASSWORD}
        refused = await ui.client.post("/ui/login", data=data, allow_redirects=False)
        assert refused.status == 403, "the right password does not open a session"
        await _sign_in(ui)
        page = await ui.client.get("/ui/settings")
        text = await page.text()
        assert "Security warning" in text and "password login is turned off" in text
        csrf = text.split('name="csrf" value="')[1].split('"')[0]
        shown = await ui.client.post("/ui/settings/master-key", data={"csrf": csrf})
        assert MASTER in await shown.text(), "a fresh sign-in stands in for the password"
    finally:
        await ui.client.close()


def test_password_login_can_be_turned_off_only_with_oidc_and_an_allow_list() -> None:
    base = {"MASTER_API_KEY": MASTER}
    with pytest.raises(SettingsError, match="FLAREPORT_UI_PASSWORD_LOGIN"):
        load_api({**base, "FLAREPORT_UI_PASSWORD_LOGIN": "false"})
    sso = {**base, "FLAREPORT_OIDC_ISSUER": "https://id.example.com", "FLAREPORT_OIDC_CLIENT_ID": "c"}
    with pytest.raises(SettingsError, match="ALLOWED"):
        load_api({**sso, "FLAREPORT_OIDC_CLIENT_SECRET": "s"})
    loaded = load_api(
        {**sso, "FLAREPORT_OIDC_CLIENT_SECRET": "s", "FLAREPORT_OIDC_ALLOWED_DOMAINS": "Example.com",
         "FLAREPORT_UI_PASSWORD_LOGIN": "false"}
    )  # fmt: skip
    assert loaded.oidc_allowed_domains == ("example.com",) and not loaded.ui_password_login
    assert "s" not in repr(loaded).split("oidc_client_secret")[-1][:5], "the secret stays out of repr"
