"""Web UI login: password check, sessions in Redis (surviving an API restart), CSRF, the login brake, logout,
the generated first-start password, and the bearer-key JSON API left untouched."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from flareport_api.app import create_app
from flareport_api.ui import login
from flareport_api.ui.sessions import verify_password
from flareport_cli.localredis import LocalRedis
from flareport_common.errors import SettingsError
from flareport_common.keys import Keys
from flareport_common.settings import ApiSettings, load_api
from fptest.api_helpers import MASTER
from fptest.cli_helpers import api_process

from .conftest import PASSWORD, Ui, csrf_of

PAGES = ("/ui/", "/ui/agents", "/ui/keys", "/ui/manual-rules", "/ui/access-groups", "/ui/dead-letters", "/ui/settings")


async def test_every_page_sends_a_stranger_to_the_login_page(ui: Ui) -> None:
    for path in (*PAGES, "/ui/agents/some-agent"):
        response = await ui.client.get(path, allow_redirects=False)
        assert response.status == 302, f"{path} must not render without a session"
        assert response.headers["Location"].startswith("/ui/login?next="), path
    root = await ui.client.get("/", allow_redirects=False)
    assert root.headers["Location"] == "/ui/"
    events = await ui.client.get("/ui/events")
    assert events.status == 401, "the live stream needs a session too"


async def test_login_with_the_right_password_opens_a_session_cookie(ui: Ui) -> None:
    response = await ui.login()
    assert response.status == 302
    assert response.headers["Location"] == "/ui/"
    cookie = response.cookies["fp_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert not cookie["secure"], "plain http (no proxy saying https): no Secure flag, or the browser drops it"
    dashboard = await ui.client.get("/ui/", allow_redirects=False)
    assert dashboard.status == 200
    assert "Hostnames" in await dashboard.text()


async def test_wrong_password_or_user_is_refused(ui: Ui) -> None:
    wrong = await ui.login(password="not it")
    assert wrong.status == 401
    assert "Wrong user name or password" in await wrong.text()
    other = await ui.login(user="root")
    assert other.status == 401
    assert (await ui.client.get("/ui/", allow_redirects=False)).status == 302


async def test_login_without_the_csrf_cookie_token_is_refused(ui: Ui) -> None:
    await ui.client.get("/ui/login")
    forged = await ui.client.post(
        "/ui/login", data={"csrf": "guessed", "username": "admin", "password": PASSWORD}, allow_redirects=False
    )
    assert forged.status == 403
    assert (await ui.client.get("/ui/", allow_redirects=False)).status == 302, "no session was created"


async def test_a_form_without_the_session_csrf_token_changes_nothing(ui: Ui) -> None:
    await ui.logged_in()
    for token in ("", "wrong-token"):
        response = await ui.client.post("/ui/keys", data={"csrf": token, "label": "evil"}, allow_redirects=False)
        assert response.status == 403
    assert await ui.redis.hlen(ui.keys.api_keys_index) == 0, "no key was created by the forged forms"
    ok = await ui.post("/ui/keys", label="good")
    assert ok.status == 200
    assert await ui.redis.hlen(ui.keys.api_keys_index) == 1


async def test_failed_logins_from_one_address_are_braked(ui: Ui, settings: ApiSettings) -> None:
    for _ in range(settings.ui_login_limit):
        assert (await ui.login(password="guess")).status == 401
    braked = await ui.login()  # even the right password waits now
    assert braked.status == 429
    assert int(braked.headers["Retry-After"]) > 0
    assert "Too many failed logins" in await braked.text()


async def test_session_survives_an_api_restart(settings: ApiSettings, keys: Keys, redis: Any) -> None:
    first: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await first.start_server()
    ui = Ui(client=first, keys=keys, redis=redis)
    response = await ui.login()
    token = response.cookies["fp_session"].value
    await first.close()

    second: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await second.start_server()
    try:
        page = await second.get("/ui/agents", cookies={"fp_session": token}, allow_redirects=False)
        assert page.status == 200, "a new API process accepts the session kept in Redis"
    finally:
        await second.close()


async def _session_after_restart(settings: ApiSettings, keys: Keys, redis: Any, token: str) -> int:
    """The answer a new API process with ``settings`` gives to a page request carrying the session cookie."""
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        page = await client.get("/ui/agents", cookies={"fp_session": token}, allow_redirects=False)
        return page.status
    finally:
        await client.close()


async def _token_of_a_login(settings: ApiSettings, keys: Keys, redis: Any, password: str = PASSWORD) -> str:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        response = await Ui(client=client, keys=keys, redis=redis).login(password=password)
        assert response.status == 302
        return str(response.cookies["fp_session"].value)
    finally:
        await client.close()


async def test_a_new_admin_password_ends_the_sessions_opened_with_the_old_one(
    settings: ApiSettings, keys: Keys, redis: Any
) -> None:
    token = await _token_of_a_login(settings, keys, redis)
    assert await _session_after_restart(settings, keys, redis, token) == 200, "same password: the session lives"
    changed = replace(settings, admin_password="a brand new password")
    assert await _session_after_restart(changed, keys, redis, token) == 302, "the old password's session is over"
    assert await _session_after_restart(settings, keys, redis, token) == 302, "also on a replica not restarted yet"

    hashed = await asyncio.to_thread(PasswordHasher().hash, "first hash")
    by_hash = replace(settings, admin_password=None, admin_password_hash=hashed)
    token = await _token_of_a_login(by_hash, keys, redis, password="first hash")
    assert await _session_after_restart(by_hash, keys, redis, token) == 200
    rehashed = await asyncio.to_thread(PasswordHasher().hash, "second hash")
    assert await _session_after_restart(replace(by_hash, admin_password_hash=rehashed), keys, redis, token) == 302


async def test_a_session_ends_at_its_absolute_lifetime_however_active(
    settings: ApiSettings, keys: Keys, redis: Any
) -> None:
    short = replace(settings, ui_session_hours=1.0, ui_session_max_hours=2.0)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(short)))
    await client.start_server()
    try:
        ui = Ui(client=client, keys=keys, redis=redis)
        token = (await ui.login()).cookies["fp_session"].value
        stored = keys.ui_session(hashlib.sha256(token.encode()).hexdigest())
        assert 3500 < await redis.ttl(stored) <= 3600, "idle expiry: one hour"

        # Signed in 1 h 59 min 30 s ago and active ever since: 30 s left, and the sliding expiry does not add more.
        signed_in = datetime.now(UTC) - timedelta(hours=2) + timedelta(seconds=30)
        await redis.hset(stored, "created_at", signed_in.isoformat())
        assert (await client.get("/ui/agents", allow_redirects=False)).status == 200
        assert 0 < await redis.ttl(stored) <= 30, "the sliding expiry stops at the absolute end"

        await redis.hset(stored, "created_at", (signed_in - timedelta(seconds=31)).isoformat())
        ended = await client.get("/ui/agents", allow_redirects=False)
        assert ended.status == 302 and ended.headers["Location"].startswith("/ui/login")
        assert not await redis.exists(stored)
    finally:
        await client.close()


def test_the_absolute_session_lifetime_is_never_shorter_than_the_idle_one() -> None:
    base = {"MASTER_API_KEY": MASTER}
    assert load_api(base).ui_session_max_hours == 24.0
    assert load_api({**base, "FLAREPORT_UI_SESSION_HOURS": "48"}).ui_session_max_hours == 48.0
    with pytest.raises(SettingsError, match="FLAREPORT_UI_SESSION_MAX_HOURS: must be at least"):
        load_api({**base, "FLAREPORT_UI_SESSION_HOURS": "8", "FLAREPORT_UI_SESSION_MAX_HOURS": "4"})


async def test_logout_ends_the_session_for_good(ui: Ui) -> None:
    await ui.logged_in()
    token = ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/"))["fp_session"].value
    response = await ui.post("/ui/logout")
    assert response.status == 302
    assert response.headers["Location"] == "/ui/login"
    replayed = await ui.client.get("/ui/", cookies={"fp_session": token}, allow_redirects=False)
    assert replayed.status == 302, "the old cookie is worthless after logout"
    stored = [k async for k in ui.redis.scan_iter(match=ui.keys.prefix + "ui:session:*")]
    assert stored == []


async def _login_cookie_over_forwarded_https(settings: ApiSettings) -> Any:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        page = await client.get("/ui/login", headers={"X-Forwarded-Proto": "https"})
        token = csrf_of(await page.text())
        response = await client.post(
            "/ui/login",
            data={"csrf": token, "username": "admin", "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https"},
            cookies={"fp_login_csrf": token},  # the client itself speaks http, so it would hold back a Secure cookie
            allow_redirects=False,
        )
        assert response.status == 302
        return response.cookies["fp_session"]
    finally:
        await client.close()


async def test_cookie_is_secure_behind_an_https_proxy_that_is_trusted(settings: ApiSettings) -> None:
    behind_proxy = replace(settings, trusted_proxies=("127.0.0.1/32", "::1/128"))
    assert (await _login_cookie_over_forwarded_https(behind_proxy))["secure"]
    # From a peer that is no trusted proxy the header is anyone's word: the cookie follows the real connection.
    assert not (await _login_cookie_over_forwarded_https(settings))["secure"]


async def test_first_start_without_a_password_writes_it_to_a_private_file_and_never_logs_it(
    redis_server: LocalRedis, redis: Any, keys: Keys, prefix: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "state" / "flareport" / "admin-password"
    extra = {"FLAREPORT_ADMIN_PASSWORD_FILE": str(secret_file), "LOG_LEVEL": "info"}
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with api_process(redis_server.url, prefix, logs[0], extra) as api:
        password = secret_file.read_text().strip()
        assert len(password) >= 20
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, "only its owner can read it"
        assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            page = await browser.get(f"{api.url}/ui/login")
            data = {"csrf": csrf_of(await page.text()), "username": "admin", "password": password, "next": "/ui/"}
            logged_in = await browser.post(f"{api.url}/ui/login", data=data, allow_redirects=False)
            assert logged_in.status == 302, "the password in the file logs in"
    with api_process(redis_server.url, prefix, logs[1], extra):
        assert secret_file.read_text().strip() == password, "a later start keeps the stored one and writes nothing"
    first, second = (log.read_text() for log in logs)
    assert "ui.admin_password_generated" in first and str(secret_file) in first, "the log says where it is"
    assert password not in first + second, "the password itself is never logged"
    assert "ui.admin_password_generated" not in second
    assert await verify_password((await redis.get(keys.ui_admin_password_hash)).decode(), password)


async def test_concurrent_wrong_passwords_are_checked_no_more_than_the_limit(
    ui: Ui, settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 guesses at once: the brake reserves each attempt before the password is checked, so exactly ``limit`` of
    them get "wrong password" (and an argon2 check), the rest 429 without one."""
    checked = _count_checks(monkeypatch)
    page = await ui.client.get("/ui/login")
    data = {"csrf": csrf_of(await page.text()), "username": "admin", "password": "guess", "next": "/ui/"}
    answers = await asyncio.gather(*(ui.client.post("/ui/login", data=data, allow_redirects=False) for _ in range(100)))
    statuses = collections.Counter(answer.status for answer in answers)
    limit = settings.ui_login_limit
    assert statuses == {401: limit, 429: 100 - limit}
    assert len(checked) == limit
    assert (await ui.login()).status == 429, "the right password waits too"
    assert len(checked) == limit


async def test_concurrent_wrong_passwords_for_the_master_key_are_checked_no_more_than_the_limit(
    ui: Ui, settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ui.logged_in()
    checked = _count_checks(monkeypatch)
    answers = await asyncio.gather(*(ui.post("/ui/settings/master-key", password="guess") for _ in range(100)))
    assert {answer.status for answer in answers} == {302}
    assert len(checked) == settings.ui_login_limit
    await ui.post("/ui/settings/master-key", password=PASSWORD)
    page = await ui.html("/ui/settings")
    assert "Too many wrong passwords" in page and MASTER not in page, "the right password waits too"


async def test_a_right_password_after_failures_still_logs_in(ui: Ui, settings: ApiSettings) -> None:
    for _ in range(settings.ui_login_limit - 1):
        assert (await ui.login(password="guess")).status == 401
    assert (await ui.login()).status == 302, "the last attempt of the window is not lost to the reservation"


async def test_a_login_never_clears_another_clients_failures(settings: ApiSettings, keys: Keys, redis: Any) -> None:
    """Behind a trusted proxy, two clients: the admin logging in from one address leaves a guesser's count at the
    other address as it was."""
    proxied = replace(settings, trusted_proxies=("127.0.0.1/32",))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(proxied)))
    await client.start_server()
    try:
        token = csrf_of(await (await client.get("/ui/login")).text())

        async def attempt(address: str, password: str) -> int:
            data = {"csrf": token, "username": "admin", "password": password, "next": "/ui/"}
            headers = {"X-Forwarded-For": address}
            response = await client.post(
                "/ui/login", data=data, headers=headers, cookies={"fp_login_csrf": token}, allow_redirects=False
            )
            return response.status

        guesser, admin = "203.0.113.7", "198.51.100.20"
        for _ in range(settings.ui_login_limit):
            assert await attempt(guesser, "guess") == 401
        assert await attempt(admin, PASSWORD) == 302
        assert await attempt(guesser, "guess") == 429, "the guesser is still braked"
        assert await attempt(guesser, PASSWORD) == 429
    finally:
        await client.close()


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the login handlers verify with argon2, in order."""
    checked: list[str] = []

    async def counting(hashed: str, password: str) -> bool:
        checked.append(password)
        return await verify_password(hashed, password)

    monkeypatch.setattr(login, "verify_password", counting)
    return checked


async def test_the_admin_json_api_still_takes_the_bearer_master_key(ui: Ui) -> None:
    response = await ui.client.get("/api/v1/agents", headers={"Authorization": f"Bearer {MASTER}"})
    assert response.status == 200
    assert await response.json() == {"agents": []}
    assert (await ui.client.get("/api/v1/agents")).status == 401, "a UI session is not an API credential"
