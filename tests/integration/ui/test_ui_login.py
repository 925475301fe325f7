"""Web UI login: password check, sessions in Redis (surviving an API restart), CSRF, the login brake, logout,
the generated first-start password, and the bearer-key JSON API left untouched."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_api.ui.sessions import verify_password
from flareport_common.keys import Keys
from flareport_common.settings import ApiSettings
from fptest.api_helpers import MASTER

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


async def test_cookie_is_secure_behind_an_https_proxy(ui: Ui) -> None:
    page = await ui.client.get("/ui/login", headers={"X-Forwarded-Proto": "https"})
    token = csrf_of(await page.text())
    response = await ui.client.post(
        "/ui/login",
        data={"csrf": token, "username": "admin", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
        cookies={"fp_login_csrf": token},  # the client itself speaks http, so it would hold back a Secure cookie
        allow_redirects=False,
    )
    assert response.status == 302
    assert response.cookies["fp_session"]["secure"]


async def test_first_start_without_a_password_generates_one_and_logs_it_once(
    settings: ApiSettings, keys: Keys, redis: Any
) -> None:
    bare = replace(settings, admin_password=None)
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            client: TestClient[Any, Any] = TestClient(TestServer(create_app(bare)))
            await client.start_server()
            await client.close()
    generated = [entry for entry in logs if entry["event"] == "ui.admin_password_generated"]
    assert len(generated) == 1, "printed once, by the first start only"
    stored = await redis.get(keys.ui_admin_password_hash)
    assert stored.decode().startswith("$argon2id$")
    assert await verify_password(stored.decode(), generated[0]["password"])

    client = TestClient(TestServer(create_app(bare)))
    await client.start_server()
    try:
        ui = Ui(client=client, keys=keys, redis=redis)
        assert (await ui.login(password=generated[0]["password"])).status == 302
    finally:
        await client.close()


async def test_the_admin_json_api_still_takes_the_bearer_master_key(ui: Ui) -> None:
    response = await ui.client.get("/api/v1/agents", headers={"Authorization": f"Bearer {MASTER}"})
    assert response.status == 200
    assert await response.json() == {"agents": []}
    assert (await ui.client.get("/api/v1/agents")).status == 401, "a UI session is not an API credential"
