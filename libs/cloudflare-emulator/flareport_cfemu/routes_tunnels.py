"""Cloudflare Tunnel endpoints under ``/accounts/{account_id}/cfd_tunnel``, thin over :mod:`tunnels_store`.

Lists default to 20 per page, clamped to 1..1000.
"""

from __future__ import annotations

from aiohttp import web

from flareport_cfemu import tunnels_store
from flareport_cfemu.envelope import API_PREFIX, paginate, read_json, success
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.state import public

routes = web.RouteTableDef()
TUNNELS = API_PREFIX + "/accounts/{account_id}/cfd_tunnel"
TUNNEL = TUNNELS + "/{tunnel_id}"


@routes.get(TUNNELS)
async def list_tunnels(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    chosen = tunnels_store.list_tunnels(state, request.match_info["account_id"], request.query, request.path)
    page, info = paginate(chosen, request.query, default_per_page=20, max_per_page=1000)
    return success(page, result_info=info)


@routes.post(TUNNELS)
async def create_tunnel(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    body = await read_json(request)
    return success(tunnels_store.create_tunnel(state, request.match_info["account_id"], body, request.path))


@routes.get(TUNNEL)
async def get_tunnel(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    return success(public(tunnels_store.lookup(state, info["account_id"], info["tunnel_id"], request.path)))


@routes.patch(TUNNEL)
async def edit_tunnel(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    body = await read_json(request)
    return success(tunnels_store.edit_tunnel(state, info["account_id"], info["tunnel_id"], body, request.path))


@routes.delete(TUNNEL)
async def delete_tunnel(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    return success(tunnels_store.delete_tunnel(state, info["account_id"], info["tunnel_id"], request.path))


@routes.get(TUNNEL + "/token")
async def get_token(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    tunnel = tunnels_store.lookup(state, info["account_id"], info["tunnel_id"], request.path, live=True)
    return success(tunnels_store.token_for(tunnel))


@routes.get(TUNNEL + "/configurations")
async def get_configuration(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    return success(tunnels_store.get_config(state, info["account_id"], info["tunnel_id"], request.path))


@routes.put(TUNNEL + "/configurations")
async def put_configuration(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    body = await read_json(request)
    return success(tunnels_store.put_config(state, info["account_id"], info["tunnel_id"], body, request.path))
