"""Login, logout and the settings page (which shows the master API key only after the password is entered again).

The login form is protected by a double-submit CSRF cookie (there is no session yet to bind a token to); a
successful login issues a brand-new session id, so a session id planted before login is worthless.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from flareport_api.clientaddr import client_address
from flareport_api.state import ApiContext, context
from flareport_api.ui.guards import UI, FormError, field, form, page, render
from flareport_api.ui.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, same, verify_password
from flareport_common.messages.base import utcnow

FRESH_LOGIN_S = 300


def _next(value: str) -> str:
    # Only local UI pages: an attacker's link must not turn the login into an open redirect.
    return value if value.startswith("/ui") and not value.startswith("//") else "/ui/"


async def login_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.StreamResponse:
    ui = request.app[UI]
    if error is None and await ui.sessions.load(request) is not None:
        raise web.HTTPFound("/ui/")
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request, "login.html", http_status=status, csrf=token, error=error, next=_next(request.query.get("next", ""))
    )
    ui.sessions.set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


async def show_login(request: web.Request) -> web.StreamResponse:
    return await login_page(request)


async def do_login(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    data = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not same(str(data.get("csrf", "")), cookie):
        return await login_page(request, error="The form expired; please try again.", status=403)
    if not context(request).settings.ui_password_login:
        return await login_page(request, error="Password login is turned off; use single sign-on.", status=403)
    address = client_address(request)
    # The attempt is reserved before the password is checked: however many arrive at once, at most the limit are.
    retry = await ui.brake.reserve(address)
    if retry is not None:
        response = await login_page(
            request, error=f"Too many failed logins from your address; try again in {retry}s.", status=429
        )
        response.headers["Retry-After"] = str(retry)
        return response
    sessions = ui.sessions
    user, password = field(data, "username"), str(data.get("password") or "")
    expected_user = context(request).settings.admin_user
    password_ok = await verify_password(ui.password_hash, password)  # checked even for a wrong user: same timing
    if not (same(user, expected_user) and password_ok):
        return await login_page(request, error="Wrong user name or password.", status=401)  # stays counted
    await ui.brake.release(address)
    token, _ = await sessions.create(user)
    response = web.HTTPFound(_next(str(data.get("next") or "")))
    sessions.set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    raise response


@form("/ui/")
async def do_logout(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    await request.app[UI].sessions.delete(session)
    response = web.HTTPFound("/ui/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@page
async def settings_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    flash = await request.app[UI].sessions.pop_flash(session)
    return render(request, "settings.html", session=session, flash=flash, master_key=None)


@form("/ui/settings")
async def reveal_master_key(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    ui = request.app[UI]
    if not ctx.settings.ui_password_login:
        # No password to re-enter: a sign-in within the last few minutes stands in for it.
        fresh = session.created_at is not None and (utcnow() - session.created_at).total_seconds() < FRESH_LOGIN_S
        if not fresh:
            raise FormError("Sign in again (log out, then single sign-on) to show the master API key.")
        return render(request, "settings.html", session=session, flash=None, master_key=ctx.settings.master_api_key)
    address = client_address(request)
    retry = await ui.brake.reserve(address)  # before the check, as for the login form
    if retry is not None:
        raise FormError(f"Too many wrong passwords from your address; try again in {retry}s.")
    password = str(data.get("password") or "")
    if not await verify_password(ui.password_hash, password):
        raise FormError("Wrong password: the master API key stays hidden.")
    await ui.brake.release(address)
    return render(request, "settings.html", session=session, flash=None, master_key=ctx.settings.master_api_key)
