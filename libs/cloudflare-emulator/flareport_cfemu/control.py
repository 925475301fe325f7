"""Test and demo controls under ``/__emulator`` (no authentication, never rate-limited or logged).

Each endpoint wraps one :class:`~flareport_cfemu.runtime.Emulator` method:

=========================  ====================================================================
``POST /seed``             add objects (body: seed document; ``?replace=true`` empties first)
``GET /state``             full state dump (the persistence format)
``POST /reset``            empty state, request log, faults and rate-limit windows
``GET /requests``          request log + counters (``?limit=N`` keeps the last N entries)
``DELETE /requests``       clear the log and counters
``GET /faults``            current fault rules (with how often each fired)
``POST /faults``           add rules (body: a rule or a list; ``?replace=true`` replaces)
``DELETE /faults``         remove every rule
``GET /config``            current limits
``POST /config``           change limits (rate_limit, rate_window_seconds, batch_limit, ...)
``POST /tunnels/{id}/connect``     a connector starts (body: ``client_id``?, ``connections``?)
``POST /tunnels/{id}/disconnect``  connectors stop (body: ``client_id``? - all when absent); connections linger
=========================  ====================================================================
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from flareport_cfemu.errors import ApiError
from flareport_cfemu.runtime import EMULATOR

PREFIX = "/__emulator"
routes = web.RouteTableDef()


def _ok(result: Any) -> web.Response:
    return web.json_response({"success": True, "result": result})


def _fail(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "errors": [{"code": 0, "message": message}]}, status=status)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw else {}


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in {"1", "true", "yes"}


@routes.post(PREFIX + "/seed")
async def seed(request: web.Request) -> web.Response:
    try:
        data = await _body(request)
        created = request.app[EMULATOR].seed(data, replace=_flag(request, "replace"))
    except ApiError as error:
        return _fail(400, f"[{error.code}] {error.message}")
    except (ValueError, KeyError, TypeError) as error:
        return _fail(400, f"invalid seed: {error!r}")
    return _ok(created)


@routes.get(PREFIX + "/state")
async def state(request: web.Request) -> web.Response:
    # The live state, not a copy: json_response renders it before anything else runs on the loop.
    return _ok(request.app[EMULATOR].state.view())


@routes.post(PREFIX + "/reset")
async def reset(request: web.Request) -> web.Response:
    request.app[EMULATOR].reset()
    return _ok(None)


@routes.get(PREFIX + "/requests")
async def requests(request: web.Request) -> web.Response:
    limit = request.query.get("limit")
    return _ok(request.app[EMULATOR].requests(limit=int(limit) if limit else None))


@routes.delete(PREFIX + "/requests")
async def clear_requests(request: web.Request) -> web.Response:
    request.app[EMULATOR].clear_requests()
    return _ok(None)


@routes.get(PREFIX + "/faults")
async def list_faults(request: web.Request) -> web.Response:
    return _ok([rule.to_json() for rule in request.app[EMULATOR].faults.rules])


@routes.post(PREFIX + "/faults")
async def add_faults(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    try:
        data = await _body(request)
        rules = data if isinstance(data, list) else [data]
        if _flag(request, "replace"):
            emulator.set_faults(rules)
        else:
            for rule in rules:
                emulator.add_fault(rule)
    except (ValueError, TypeError) as error:
        return _fail(400, f"invalid fault rule: {error}")
    return _ok([rule.to_json() for rule in emulator.faults.rules])


@routes.delete(PREFIX + "/faults")
async def clear_faults(request: web.Request) -> web.Response:
    request.app[EMULATOR].clear_faults()
    return _ok(None)


@routes.get(PREFIX + "/config")
async def get_config(request: web.Request) -> web.Response:
    return _ok(request.app[EMULATOR].config.public())


@routes.post(PREFIX + "/config")
async def set_config(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    try:
        data = await _body(request)
        if not isinstance(data, dict):
            raise TypeError("body must be an object")
        config = emulator.configure(**data)
    except (ValueError, TypeError) as error:
        return _fail(400, f"invalid config: {error}")
    return _ok(config.public())


@routes.post(PREFIX + "/tunnels/{tunnel_id}/connect")
async def connect_tunnel(request: web.Request) -> web.Response:
    try:
        data = await _body(request)
        client_id = data.get("client_id")
        result = request.app[EMULATOR].connect_tunnel(
            request.match_info["tunnel_id"],
            client_id=str(client_id) if client_id else None,
            connections=int(data.get("connections", 4)),
        )
    except ApiError as error:
        return _fail(400, f"[{error.code}] {error.message}")
    except (ValueError, TypeError, AttributeError) as error:
        return _fail(400, f"invalid connect: {error}")
    return _ok(result)


@routes.post(PREFIX + "/tunnels/{tunnel_id}/disconnect")
async def disconnect_tunnel(request: web.Request) -> web.Response:
    try:
        data = await _body(request)
        client_id = data.get("client_id")
        result = request.app[EMULATOR].disconnect_tunnel(
            request.match_info["tunnel_id"], client_id=str(client_id) if client_id else None
        )
    except ApiError as error:
        return _fail(400, f"[{error.code}] {error.message}")
    except (ValueError, TypeError, AttributeError) as error:
        return _fail(400, f"invalid disconnect: {error}")
    return _ok(result)
