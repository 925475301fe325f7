"""The request pipeline in front of every ``/client/v4`` handler.

Order matters and mirrors what a client of Cloudflare observes:

0. arrival - a fault rule's ``arrival_delay_ms`` holds the request back before anything counts it (a slow path
   between the client and Cloudflare);
1. authentication - a missing or wrong ``Authorization: Bearer`` is a 401 with code 10000;
2. rate limits - the client address's requests per second, then the token's fixed window; past either a 429
   with code 971 and ``Retry-After`` (the refused request still counts in the request log);
3. faults - added latency, an injected status, or a dropped connection;
4. the handler - whose :class:`ApiError` becomes Cloudflare's error envelope; an unknown route
   is 404 / 7000, a known route with the wrong method 405 / 7001;
5. the request log - every request, whatever happened, with its endpoint template and status.

Every answer to an authenticated request, a refusal too, carries the token's ``Ratelimit`` and ``Ratelimit-Policy``
headers as they stand after the request was counted (``ratelimit``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from flareport_cfemu import errors
from flareport_cfemu.envelope import API_PREFIX, error_body, error_response
from flareport_cfemu.errors import ApiError
from flareport_cfemu.requestlog import UNMATCHED, RequestEntry
from flareport_cfemu.runtime import EMULATOR, Emulator
from flareport_cfemu.state import now_iso

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)


def endpoint_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED
    return resource.canonical.removeprefix(API_PREFIX) or "/"


def _token(request: web.Request, emulator: Emulator) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    expected = emulator.config.token
    if scheme.lower() != "bearer" or not token or (expected is not None and token != expected):
        raise ApiError(401, errors.AUTH_ERROR, "Authentication error")
    return token


async def _guarded(
    request: web.Request, handler: Handler, emulator: Emulator, template: str
) -> tuple[web.StreamResponse, str | None]:
    arrival = emulator.faults.arrival_delay(request.method, template)
    if arrival:
        await asyncio.sleep(arrival / 1000)
    token = _token(request, emulator)
    config = emulator.config
    retry_after = None
    if config.address_rate_limit > 0:
        retry_after = emulator.address_limiter.hit(request.remote or "", limit=config.address_rate_limit)
    if retry_after is None:
        retry_after = emulator.limiter.hit(token, limit=config.rate_limit, window_seconds=config.rate_window_seconds)
    if retry_after is not None:
        error = ApiError(429, errors.RATE_LIMITED, "Please wait and consider throttling your request speed")
        return error_response(error, headers={"Retry-After": str(retry_after)}), "rate_limited"
    decision = emulator.faults.decide(request.method, template)
    if decision.latency_ms:
        await asyncio.sleep(decision.latency_ms / 1000)
    if decision.action == "drop":
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499), decision.label
    if decision.action == "status":
        if decision.status == 429:
            error = ApiError(429, errors.RATE_LIMITED, "Please wait and consider throttling your request speed")
            headers = {"Retry-After": str(decision.retry_after)}
        else:
            rule = decision.rule
            message = "Internal server error" if decision.status >= 500 else "Injected client error"
            if rule is not None and rule.error_message is not None:
                message = rule.error_message
            code = rule.error_code if rule is not None and rule.error_code is not None else errors.INJECTED_SERVER_ERROR
            error = ApiError(decision.status, code, message, chain=rule.chain() if rule is not None else ())
            headers = {}
        return error_response(error, headers=headers), decision.label
    return await handler(request), decision.label


def _with_rate_headers(request: web.Request, response: web.StreamResponse, emulator: Emulator) -> web.StreamResponse:
    """The token's standing in Cloudflare's headers; none for a request without a valid token (none was counted)."""
    try:
        token = _token(request, emulator)
    except ApiError:
        return response
    if response.prepared:
        return response
    config = emulator.config
    left, reset = emulator.limiter.remaining(token, limit=config.rate_limit, window_seconds=config.rate_window_seconds)
    response.headers["Ratelimit"] = f'"default";r={left};t={reset}'
    response.headers["Ratelimit-Policy"] = (
        f'"default";q={config.rate_limit};w={max(1, math.ceil(config.rate_window_seconds))}'
    )
    return response


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
        return await handler(request)
    emulator = request.app[EMULATOR]
    template = endpoint_template(request)
    started = time.perf_counter()
    status, fault = 500, None
    try:
        response, fault = await _guarded(request, handler, emulator, template)
        status = 0 if fault and "drop" in fault else response.status
        return _with_rate_headers(request, response, emulator)
    except ApiError as error:
        status = error.status
        return _with_rate_headers(request, error_response(error), emulator)
    except web.HTTPMethodNotAllowed:
        status = 405
        return web.json_response(error_body(errors.METHOD_NOT_ALLOWED, "Method not allowed"), status=405)
    except web.HTTPNotFound:
        status = 404
        return web.json_response(error_body(errors.NO_ROUTE, "No route for that URI"), status=404)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        status = 500
        return web.json_response(error_body(errors.INJECTED_SERVER_ERROR, "Internal server error"), status=500)
    finally:
        emulator.log.record(
            RequestEntry(
                method=request.method,
                path=request.path_qs,
                endpoint=f"{request.method} {template}",
                status=status,
                timestamp=now_iso(),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                fault=fault,
            )
        )
