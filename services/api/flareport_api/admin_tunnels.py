"""Admin routes for the account's tunnels: list them with their connectors, one tunnel, list them again now, and
restart or redeploy the cloudflared of a tunnel Flareport created (``usecases.tunnels``; the web UI's buttons call
the same use cases). The API never calls Cloudflare: the list is the dns-worker's read model, and the actions are
intents the reconciler turns into an agent command or a dns-worker job.
"""

from __future__ import annotations

from aiohttp import web

from flareport_api import validation
from flareport_api.errors import json_response, read_body
from flareport_api.schemas import Accepted
from flareport_api.state import Route, context
from flareport_api.tunnelschemas import RedeployRequest, TunnelDetail, TunnelList
from flareport_api.usecases import audit, tunnels


def _tunnel_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["tunnel_id"], "tunnel_id")


async def list_tunnels(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await tunnels.listing(ctx))


async def tunnel_detail(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await tunnels.detail(ctx, _tunnel_id(request)))


async def refresh(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await tunnels.refresh(ctx), status=202)


async def restart(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    accepted = await tunnels.restart(ctx, _tunnel_id(request), redeploy=False, actor=audit.API_ACTOR)
    return json_response(accepted, status=202)


async def redeploy(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    tunnel_id = _tunnel_id(request)
    body = await read_body(request, RedeployRequest)
    accepted = await tunnels.restart(ctx, tunnel_id, redeploy=True, actor=audit.API_ACTOR, image=body.image)
    return json_response(accepted, status=202)


_ADMIN = (401, 422, 429)
ROUTES = [
    Route("GET", "/api/v1/tunnels", list_tunnels,
          "The account's tunnels with their connectors, agent and creator, as last listed", "tunnels", "admin",
          None, TunnelList, errors=(401, 429)),
    Route("POST", "/api/v1/tunnels/refresh", refresh, "List the account's tunnels again now", "tunnels", "admin",
          None, Accepted, status=202, errors=(401, 429)),
    Route("GET", "/api/v1/tunnels/{tunnel_id}", tunnel_detail, "One tunnel with its connectors", "tunnels",
          "admin", None, TunnelDetail, errors=(404, *_ADMIN)),
    Route("POST", "/api/v1/tunnels/{tunnel_id}/restart", restart,
          "Restart the cloudflared of a tunnel Flareport created", "tunnels", "admin", None, Accepted, status=202,
          errors=(404, 409, *_ADMIN)),
    Route("POST", "/api/v1/tunnels/{tunnel_id}/redeploy", redeploy,
          "Recreate the cloudflared of a tunnel Flareport created (from the agent's own image)", "tunnels",
          "admin", RedeployRequest, Accepted, status=202, errors=(400, 404, 409, 413, *_ADMIN)),
]  # fmt: skip
