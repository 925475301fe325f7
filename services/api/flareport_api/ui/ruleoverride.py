"""The rule page's override form (``/ui/rules/override?key=<hostname + path>``): an admin sets a container rule's
service, origin options or Access over what its labels say, or reverts it to the labels. The same use cases as
``PUT /api/v1/rules/{hostname}/override`` and ``POST .../revert`` (``usecases.overrides``), so the same checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web
from multidict import MultiDictProxy

from flareport_api import validation
from flareport_api.schemas import RuleOverrideRequest
from flareport_api.state import ApiContext
from flareport_api.ui.guards import UI, FormError, done, field, form, page, render
from flareport_api.ui.pages import ORIGIN_FLAGS
from flareport_api.ui.sessions import Session
from flareport_api.usecases import audit, overrides
from flareport_common.readmodel import RuleRecord

Form = MultiDictProxy[Any]
_SWITCH = {"on": True, "off": False}


def page_of(key: str) -> str:
    return "/ui/rules/override?key=" + quote(key, safe="")


def _split(key: str) -> tuple[str, str | None]:
    hostname, slash, rest = key.partition("/")
    return hostname, (slash + rest) if slash else None


@page
async def override_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    key = request.query.get("key", "")
    raw = await ctx.redis.get(ctx.keys.rule(key)) if key and "@" not in key else None
    rule = None if raw is None else msgspec.json.decode(raw, type=RuleRecord)
    if rule is None or rule.source == "manual":
        raise web.HTTPFound("/ui/")  # only a published container rule has this page
    live = request.headers.get("X-Requested-With") == "live"
    flash = None if live else await request.app[UI].sessions.pop_flash(session)
    stored = await overrides.stored(ctx, key)
    return render(
        request,
        "rule_override.html",
        rule=rule,
        override=None if stored is None else stored.override,
        origin_flags=ORIGIN_FLAGS,
        back=page_of(key),
        session=session,
        flash=flash,
    )


def _body(data: Form, path: str | None) -> RuleOverrideRequest:
    raw: dict[str, Any] = {"path": path}
    if service := field(data, "service"):
        raw["service"] = service
    origin: dict[str, Any] = {n: v for n in ("origin_server_name", "http_host_header") if (v := field(data, n))}
    origin.update({n: _SWITCH.get(v, v) for n, _ in ORIGIN_FLAGS if (v := field(data, n))})
    if origin:
        raw["origin"] = origin
    if field(data, "access_mode") == "none":
        raw["access"] = {}
    elif policy := field(data, "access_policy"):
        groups = [g for g in field(data, "access_groups").replace(",", " ").split() if g]
        raw["access"] = {"policy": policy, "groups": groups}
    try:
        return msgspec.convert(raw, RuleOverrideRequest)
    except msgspec.ValidationError as exc:
        raise FormError(f"Not saved: {exc}") from exc


def _key(data: Form) -> tuple[str, str | None, str]:
    key = field(data, "key")
    hostname, path = _split(key)
    hostname = validation.hostname(hostname, "hostname")
    return hostname, path, hostname + (path or "")


@form("/ui/")
async def save_override(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    hostname, path, key = _key(data)
    await overrides.put(ctx, hostname, _body(data, path), audit.ui_actor(session.user))
    raise await done(request, session, f"Override of {key} saved.", data, page_of(key))


@form("/ui/")
async def revert_override(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    hostname, path, key = _key(data)
    await overrides.revert(ctx, hostname, path, audit.ui_actor(session.user))
    raise await done(request, session, f"{key} follows its labels again.", data, page_of(key))
