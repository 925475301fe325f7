"""The web UI's plumbing: its state on the app, Jinja2 rendering, and the guards every page and form goes through.

``page`` wraps a GET handler: no valid session -> redirect to the login page (with the page to come back to).
``form`` wraps a POST handler: a session *and* the session's CSRF token in the ``csrf`` field, else 403; the
handler gets the parsed form. A handler reports a user's mistake by raising ``FormError``: the guard stores the
message as a one-time notice on the session and redirects back (post/redirect/get), so a reload never re-posts.
Templates autoescape everything; nothing user-supplied is ever marked safe.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import jinja2
import markupsafe
from aiohttp import web
from multidict import MultiDictProxy

from flareport_api.effectiveconfig import effective
from flareport_api.errors import ApiError
from flareport_api.state import ApiContext, context
from flareport_api.ui.fingerprint import fingerprint
from flareport_api.ui.sessions import LoginBrake, Session, Sessions, same
from flareport_common.messages.base import utcnow


@dataclass(slots=True)
class UiContext:
    sessions: Sessions
    brake: LoginBrake
    password_hash: str


UI = web.AppKey("ui", UiContext)
VERSION = web.RequestKey("ui_version", str)  # the read model's fingerprint a page was rendered from
JINJA = web.AppKey("ui_jinja", jinja2.Environment)
PageHandler = Callable[[web.Request, ApiContext, Session], Awaitable[web.StreamResponse]]
FormHandler = Callable[[web.Request, ApiContext, Session, MultiDictProxy[Any]], Awaitable[web.StreamResponse]]


class FormError(Exception):
    """A mistake in what the admin submitted; shown as a notice on the page the form came from."""


def ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def ago_element(value: datetime | None) -> markupsafe.Markup | str:
    """``ago`` in a ``<time class="ago">`` carrying the moment itself: the page's script keeps the text current (an
    open page otherwise says "5s ago" for as long as nothing else changes, since live updates follow the read model,
    and a heartbeat does not change it). The markup is built from a datetime's ISO form and our own words only."""
    if value is None:
        return "never"
    moment = iso(value)
    return markupsafe.Markup('<time class="ago" datetime="{0}" title="{0}">{1}</time>').format(moment, ago(value))


def iso(value: datetime | None) -> str:
    """A moment as the pages show it in attributes (``datetime``, ``data-at``), which the page's script parses."""
    return value.isoformat(timespec="seconds") if value else ""


def countdown(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = int((value - utcnow()).total_seconds())
    if seconds <= 0:
        return "due now"
    minutes, rest = divmod(seconds, 60)
    return f"in {minutes}m {rest:02d}s" if minutes else f"in {rest}s"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flareport_api.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago_element
    env.filters["countdown"] = countdown
    env.filters["iso"] = iso
    env.filters["effective"] = effective  # the settings page: this process's configuration, secrets masked
    return env


def render(request: web.Request, template: str, http_status: int = 200, **values: Any) -> web.Response:
    html = (
        request.app[JINJA]
        .get_template(template)
        .render(path=request.path, settings=context(request).settings, live_version=request.get(VERSION, ""), **values)
    )
    # Pages show keys and internal state: never cache them, never frame them.
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    }
    return web.Response(text=html, content_type="text/html", status=http_status, headers=headers)


def login_redirect(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound("/ui/login?next=" + quote(request.path_qs, safe=""))


def page(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        session = await request.app[UI].sessions.load(request)
        if session is None:
            raise login_redirect(request)
        ctx = context(request)
        # Read before the page reads what it shows (see fingerprint.py).
        request[VERSION] = await fingerprint(ctx)
        return await handler(request, ctx, session)

    return guarded


def back(request: web.Request, form: Mapping[str, Any], default: str) -> str:
    """Where to go after a form: its ``back`` field if it is a local page, else ``default``."""
    target = str(form.get("back") or default)
    return target if target.startswith("/ui") and not target.startswith("//") else default


def form(default_back: str) -> Callable[[FormHandler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    def wrap(handler: FormHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            ui = request.app[UI]
            session = await ui.sessions.load(request)
            if session is None:
                raise login_redirect(request)
            data = await request.post()
            if not same(str(data.get("csrf", "")), session.csrf):
                return web.Response(status=403, text="CSRF token missing or wrong; reload the page and try again")
            try:
                return await handler(request, context(request), session, data)
            except FormError as exc:
                await ui.sessions.set_flash(session, str(exc))
            except ApiError as exc:  # the admin API's own validation, reused as is
                await ui.sessions.set_flash(session, exc.message)
            raise web.HTTPFound(back(request, data, default_back))

        return guarded

    return wrap


async def done(
    request: web.Request, session: Session, message: str, data: Mapping[str, Any], default: str
) -> web.HTTPFound:
    """Finish a successful form (``raise await done(...)``): a one-time notice, then back to the page."""
    await request.app[UI].sessions.set_flash(session, message)
    return web.HTTPFound(back(request, data, default))


def field(data: Mapping[str, Any], name: str) -> str:
    return str(data.get(name) or "").strip()
