"""The aiohttp application: routes from the modules' tables, middlewares, and the resources it owns.

``cleanup_ctx`` owns the Redis client and the two background tasks of the command hub (the pub/sub listener
and the fallback timer); ``on_shutdown`` releases open long-polls first so a stopping API answers its waiting
agents at once instead of holding them until the shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flareport_api import (
    admin_agents,
    admin_audit,
    admin_backups,
    admin_hostnames,
    admin_ops,
    admin_rules,
    admin_settings,
    admin_tunnels,
    agent_routes,
    openapi,
    ui,
)
from flareport_api.auth import Authenticator, FailureLimiter, SharedFailures
from flareport_api.clientaddr import TRUSTED_PROXIES, TrustedProxies
from flareport_api.errors import ApiError, error_response, json_response
from flareport_api.keyproof import KeyMinter
from flareport_api.keystore import KeyStore
from flareport_api.longpoll import CommandHub
from flareport_api.metrics import Handler, metrics_middleware
from flareport_api.scripts import AcceptEvents
from flareport_api.state import CONTEXT, ROUTES, SETTINGS, ApiContext, Route
from flareport_common.keys import Keys
from flareport_common.redisconn import connect
from flareport_common.settings import ApiSettings, derived_agent_key_secret
from flareport_common.streams import Producer

log = structlog.get_logger("flareport.api")
OPENAPI = web.AppKey("openapi", dict[str, Any])
REDIS_POOL_SIZE = 128
CLIENT_CLOSED = 499
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await _read_once_more(request, handler)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason, headers=headers)
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError) as exc:
        log.warning("api.redis_unavailable", error=str(exc), path=request.path)
        return error_response(503, "redis_unavailable", "Redis is not reachable; retry later")
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and _client_gone(request):
            # The client went away before its body arrived (an agent stopping mid-request, a proxy's timeout).
            # Nothing was read, so nothing was done; not a server error: no 500 in the metrics operators alert on,
            # no error log. 499 is the status proxies (nginx) record for it; the client never sees it.
            log.info("api.client_disconnected", path=request.path, method=request.method)
            return error_response(CLIENT_CLOSED, "client_closed_request", "the client closed the connection")
        log.exception("api.unhandled_error", path=request.path, method=request.method)
        return error_response(500, "internal_error", "internal error (logged)")


def _client_gone(request: web.Request) -> bool:
    """Whether the request's own connection is closed: a reset met on another connection (an HTTP call the API
    makes itself, to an identity provider) is an error of ours to log, not the client's hang-up."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _read_once_more(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A read that met a connection Redis had closed (a restart, a failover) runs once more on fresh connections.
    After Redis comes back, every idle connection in the pool is dead and each would fail one request with 503:
    the first failure drops them all, and the read (GET and HEAD change nothing, so repeating one is safe) goes on.
    A write is never repeated: whether it reached Redis is unknown, so it answers 503 and its caller decides."""
    try:
        return await handler(request)
    except RedisConnectionError as exc:
        ctx = request.app.get(CONTEXT)
        if request.method not in ("GET", "HEAD") or ctx is None:
            raise
        log.info("api.redis_reconnecting", error=str(exc), path=request.path)
        await ctx.redis.connection_pool.disconnect(inuse_connections=False)
        return await handler(request)


async def serve_openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])


def all_routes() -> list[Route]:
    own = Route("GET", "/api/v1/openapi.json", serve_openapi, "This document", "health", "none")
    return [
        *agent_routes.ROUTES,
        *admin_agents.ROUTES,
        *admin_rules.ROUTES,
        *admin_ops.ROUTES,
        *admin_hostnames.ROUTES,
        *admin_tunnels.ROUTES,
        *admin_backups.ROUTES,
        *admin_settings.ROUTES,
        *admin_audit.ROUTES,
        own,
    ]


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A pool that waits for a free connection instead of failing: 1,000 woken long-polls share it.
    redis = connect(settings.common, max_connections=REDIS_POOL_SIZE, wait_seconds=10)
    keys = Keys(settings.common.key_prefix)
    # Settings built in code (tests, embedding) may leave the secret empty: derive it as loading from the
    # environment does, so both mint and verify the same keys.
    minter = KeyMinter(settings.agent_key_secret or derived_agent_key_secret(settings.master_api_key))
    store = KeyStore(
        redis,
        keys,
        minter,
        recovery=settings.agent_key_recovery,
        revoked=settings.revoked_agent_keys,
        recovery_window_s=settings.agent_key_recovery_window_seconds,
        restores_per_minute=settings.agent_key_restores_per_minute,
        nodes=settings.common.redis_nodes,
    )
    limiter = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_seconds)
    hub = CommandHub(redis, keys, poll_s=settings.command_poll_seconds, redeliver_s=settings.command_redeliver_seconds)
    ctx = ApiContext(
        settings=settings,
        keys=keys,
        redis=redis,
        store=store,
        auth=Authenticator(settings.master_api_key, store, limiter, SharedFailures(redis, keys, limiter)),
        hub=hub,
        producer=Producer(redis, metrics_label=None),
    )
    ctx.scripts["accept_events"] = AcceptEvents(redis)
    app[CONTEXT] = ctx
    listener = asyncio.create_task(hub.listen(), name="api-command-notifications")
    fallback = asyncio.create_task(hub.fallback(), name="api-command-fallback")
    try:
        yield
    finally:
        fallback.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fallback
        await hub.stop_listening(listener)
        await redis.aclose()


async def _release_long_polls(app: web.Application) -> None:
    app[CONTEXT].hub.close()


def create_app(settings: ApiSettings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[metrics_middleware, error_middleware])
    app[SETTINGS] = settings
    app[TRUSTED_PROXIES] = TrustedProxies(settings.trusted_proxies)
    routes = all_routes()
    app[ROUTES] = routes
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app[OPENAPI] = openapi.build(routes, settings)
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_release_long_polls)
    # The web UI (flareport_api.ui): its own routes (named ui-*, outside the OpenAPI document) and resources,
    # set up after the API's so that it can use the API's Redis client and key store.
    ui.setup(app)
    return app
