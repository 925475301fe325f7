"""Optional OpenID Connect single sign-on against a fake provider: allowed and refused emails, a replayed or
forged callback, a callback opened in another browser (login CSRF), a tampered ID token, ``email_verified`` and
``azp``, the configured redirect URL, password login turned off (only possible with OIDC), and its warning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer, unused_port

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
    sso: dict[str, Any] = {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_allowed_emails": ("alice@example.com",),
        "oidc_allowed_domains": ("ops.example.org",),
    }
    return replace(settings, **{**sso, **overrides})


async def _client(settings: ApiSettings, keys: Keys, redis: aioredis.Redis) -> Ui:
    """The API on a port chosen beforehand, so that its callback URL can be configured as an operator would."""
    port = unused_port()
    if settings.oidc_issuer and not settings.oidc_redirect_url:
        settings = replace(settings, oidc_redirect_url=f"http://127.0.0.1:{port}/ui/login/oidc/callback")
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings), port=port))
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
        ({"email_verified": None}, "verified email"),  # missing is not verified
        ({"email_verified": "false"}, "verified email"),
        ({"tamper": {"aud": "another-client"}}, "did not verify"),
        ({"tamper": {"azp": "another-client"}}, "issued to another client"),
        ({"tamper": {"aud": [CLIENT_ID, "another-client"]}}, "issued to another client"),  # several: azp required
        ({"tamper": {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}}, "issued to another client"),
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


@pytest.mark.parametrize(
    "tamper",
    [{"azp": CLIENT_ID}, {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID}, {"aud": [CLIENT_ID]}],
)
async def test_an_authorized_party_naming_this_client_signs_in(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis, tamper: dict[str, Any]
) -> None:
    provider.tamper = tamper
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        assert (await _sign_in(ui)).status == 302
        assert (await ui.client.get("/ui/settings", allow_redirects=False)).status == 200
    finally:
        await ui.client.close()


async def test_a_callback_opened_in_another_browser_is_refused(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    """Login CSRF: Mallory signs in as herself up to the provider's redirect, then has Alice's browser open that
    callback URL; Alice must not end up logged in to Mallory's account (or anyone's)."""
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        start = await ui.client.get("/ui/login/oidc", allow_redirects=False)
        at_provider = await ui.client.session.get(start.headers["Location"], allow_redirects=False)
        mallorys_callback = at_provider.headers["Location"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as alice:
            refused = await alice.get(mallorys_callback, allow_redirects=False)
            assert refused.status == 403
            assert "this browser did not start this sign-in" in await refused.text()
            assert "fp_session" not in refused.cookies

            # Alice started a sign-in of her own: her browser's cookie does not match Mallory's state either.
            await alice.get(ui.client.make_url("/ui/login/oidc"), allow_redirects=False)
            second = await ui.client.get("/ui/login/oidc", allow_redirects=False)
            at_provider = await ui.client.session.get(second.headers["Location"], allow_redirects=False)
            refused = await alice.get(at_provider.headers["Location"], allow_redirects=False)
            assert refused.status == 403
            assert "started in another browser" in await refused.text()
            assert "fp_session" not in refused.cookies
            mine = await alice.get(ui.client.make_url("/ui/settings"), allow_redirects=False)
            assert mine.status == 302, "Alice has no session"
    finally:
        await ui.client.close()


async def test_the_sign_in_cookie_is_short_lived_and_cleared_by_the_callback(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        start = await ui.client.get("/ui/login/oidc", allow_redirects=False)
        cookie = start.cookies["fp_oidc_binding"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] == "600"
        assert cookie["path"] == "/ui/login/oidc"
        at_provider = await ui.client.session.get(start.headers["Location"], allow_redirects=False)
        done = await ui.client.session.get(at_provider.headers["Location"], allow_redirects=False)
        assert done.status == 302
        assert done.cookies["fp_oidc_binding"].value == "", "the callback clears it"
        jar = ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/ui/login/oidc/callback"))
        assert "fp_oidc_binding" not in jar
    finally:
        await ui.client.close()


async def test_the_redirect_url_is_the_configured_one_whatever_the_host_header(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    configured = "https://flareport.example.test/ui/login/oidc/callback"
    ui = await _client(_sso(settings, provider, oidc_redirect_url=configured), keys, redis)
    try:
        start = await ui.client.get(
            "/ui/login/oidc", headers={"Host": "evil.example", "X-Forwarded-Proto": "https"}, allow_redirects=False
        )
        assert start.status == 302
        assert parse_qs(urlsplit(start.headers["Location"]).query)["redirect_uri"] == [configured]
    finally:
        await ui.client.close()


def test_oidc_needs_a_configured_redirect_url() -> None:
    sso = {
        "MASTER_API_KEY": MASTER,
        "FLAREPORT_OIDC_ISSUER": "https://id.example.com",
        "FLAREPORT_OIDC_CLIENT_ID": "c",
        "FLAREPORT_OIDC_CLIENT_SECRET": "s",
        "FLAREPORT_OIDC_ALLOWED_EMAILS": "alice@example.com",
    }
    with pytest.raises(SettingsError, match="FLAREPORT_OIDC_REDIRECT_URL: required with OIDC"):
        load_api(sso)
    loaded = load_api({**sso, "FLAREPORT_OIDC_REDIRECT_URL": "https://fp.example.com/ui/login/oidc/callback"})
    assert loaded.oidc_redirect_url == "https://fp.example.com/ui/login/oidc/callback"


async def test_a_changed_allow_list_ends_single_sign_on_sessions(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        assert (await _sign_in(ui)).status == 302
        token = ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/"))["fp_session"].value
        assert (await ui.client.get("/ui/settings", allow_redirects=False)).status == 200
    finally:
        await ui.client.close()

    # alice@example.com is still allowed by the new lists, but they are not the lists her session was opened under.
    widened = _sso(settings, provider, oidc_allowed_emails=("alice@example.com", "carol@example.com"))
    ui = await _client(widened, keys, redis)
    try:
        page = await ui.client.get("/ui/settings", cookies={"fp_session": token}, allow_redirects=False)
        assert page.status == 302 and page.headers["Location"].startswith("/ui/login")
        assert (await _sign_in(ui)).status == 302, "signing in again under the new lists works"
        assert (await ui.client.get("/ui/settings", allow_redirects=False)).status == 200
    finally:
        await ui.client.close()


async def test_a_callback_works_once_and_a_forged_state_never(
    settings: ApiSettings, provider: FakeProvider, keys: Keys, redis: aioredis.Redis
) -> None:
    ui = await _client(_sso(settings, provider), keys, redis)
    try:
        start = await ui.client.get("/ui/login/oidc", allow_redirects=False)
        binding = {"fp_oidc_binding": start.cookies["fp_oidc_binding"].value}
        at_provider = await ui.client.session.get(start.headers["Location"], allow_redirects=False)
        callback = at_provider.headers["Location"]
        assert (await ui.client.session.get(callback, allow_redirects=False)).status == 302
        ui.client.session.cookie_jar.clear()
        # Even from the browser that started it (its sign-in cookie sent again), the state is good once only.
        replayed = await ui.client.session.get(callback, cookies=binding, allow_redirects=False)
        assert replayed.status == 403
        assert "expired or was already used" in await replayed.text()
        forged = await ui.client.get(
            "/ui/login/oidc/callback?code=x&state=guessed", cookies=binding, allow_redirects=False
        )
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
    sso = {
        **base,
        "FLAREPORT_OIDC_ISSUER": "https://id.example.com",
        "FLAREPORT_OIDC_CLIENT_ID": "c",
        "FLAREPORT_OIDC_REDIRECT_URL": "https://fp.example.com/ui/login/oidc/callback",
    }
    with pytest.raises(SettingsError, match="ALLOWED"):
        load_api({**sso, "FLAREPORT_OIDC_CLIENT_SECRET": "s"})
    loaded = load_api(
        {**sso, "FLAREPORT_OIDC_CLIENT_SECRET": "s", "FLAREPORT_OIDC_ALLOWED_DOMAINS": "Example.com",
         "FLAREPORT_UI_PASSWORD_LOGIN": "false"}
    )  # fmt: skip
    assert loaded.oidc_allowed_domains == ("example.com",) and not loaded.ui_password_login
    assert "s" not in repr(loaded).split("oidc_client_secret")[-1][:5], "the secret stays out of repr"
