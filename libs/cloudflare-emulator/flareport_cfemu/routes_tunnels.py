"""Cloudflare Tunnel endpoints under ``/accounts/{account_id}/cfd_tunnel``, thin over :mod:`tunnels_store`.

Lists default to 20 per page; ``per_page`` outside 1..1000 (Cloudflare's documented bounds) is refused. The list's
``result_info`` has no ``total_count``/``total_pages``, like Cloudflare's.
"""

from __future__ import annotations

from aiohttp import web

from flareport_cfemu import tunnels_store
from flareport_cfemu.envelope import API_PREFIX, paginate, query_bool, read_json, success
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.state import public

routes = web.RouteTableDef()
TUNNELS = API_PREFIX + "/accounts/{account_id}/cfd_tunnel"
TUNNEL = TUNNELS + "/{tunnel_id}"


@routes.get(TUNNELS)
async def list_tunnels(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    chosen = tunnels_store.list_tunnels(state, request.match_info["account_id"], request.query, request.path)
    page, info = paginate(chosen, request.query, default_per_page=20, max_per_page=1000, totals=False)
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
    info = request.match_info
    emulator = request.app[EMULATOR]
    return success(
        tunnels_store.delete_tunnel(
            emulator.state,
            info["account_id"],
            info["tunnel_id"],
            request.path,
            cascade=bool(query_bool(request.query, "cascade")),
            linger_seconds=emulator.config.connection_linger_seconds,
        )
    )


@routes.get(TUNNEL + "/connections")
async def list_connections(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    info = request.match_info
    linger = emulator.config.connection_linger_seconds
    clients = tunnels_store.list_connections(
        emulator.state, info["account_id"], info["tunnel_id"], request.path, linger_seconds=linger
    )
    return success(clients)


@routes.delete(TUNNEL + "/connections")
async def clean_connections(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    info = request.match_info
    tunnels_store.clean_connections(
        emulator.state,
        info["account_id"],
        info["tunnel_id"],
        request.path,
        client_id=request.query.get("client_id") or None,
        linger_seconds=emulator.config.connection_linger_seconds,
    )
    return success(None)


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
