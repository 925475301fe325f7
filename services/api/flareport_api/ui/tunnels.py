"""The Tunnels page and its buttons: the account's tunnels with their connectors, and restart, redeploy and refresh.

The page shows what ``GET /api/v1/tunnels`` serves (``usecases.tunnels``: the dns-worker's listing joined with the
agent that runs each tunnel and whether Flareport created it) and how old that listing is. The buttons are forms with
the session's CSRF token, like every other form, and call the same use cases as the API routes; a tunnel Flareport
did not create gets no button, and a forged post for one is refused with the API's reason as the notice.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from flareport_api import validation
from flareport_api.state import ApiContext
from flareport_api.ui.guards import UI, done, field, form, page, render
from flareport_api.ui.sessions import Session
from flareport_api.usecases import audit, tunnels

PAGE = "/ui/tunnels"


@page
async def tunnels_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    # A live refresh must not take the one-time notice that belongs to the page a form's redirect renders.
    live = request.headers.get("X-Requested-With") == "live"
    flash = None if live else await request.app[UI].sessions.pop_flash(session)
    listing = await tunnels.listing(ctx)
    return render(request, "tunnels.html", listing=listing, session=session, flash=flash)


def _tunnel_id(data: MultiDictProxy[Any]) -> str:
    return validation.path_id(field(data, "tunnel_id"), "tunnel_id")


@form(PAGE)
async def restart(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    tunnel_id = _tunnel_id(data)
    await tunnels.restart(ctx, tunnel_id, redeploy=False, actor=audit.ui_actor(session.user))
    raise await done(request, session, f"Restart of the cloudflared of tunnel {tunnel_id} requested.", data, PAGE)


@form(PAGE)
async def redeploy(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    tunnel_id = _tunnel_id(data)
    image = field(data, "image") or None
    await tunnels.restart(ctx, tunnel_id, redeploy=True, actor=audit.ui_actor(session.user), image=image)
    said = f" from {image}" if image else ""
    raise await done(
        request, session, f"Redeploy of the cloudflared of tunnel {tunnel_id}{said} requested.", data, PAGE
    )


@form(PAGE)
async def refresh(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    await tunnels.refresh(ctx)
    raise await done(request, session, "A new listing of the tunnels was requested from Cloudflare.", data, PAGE)
