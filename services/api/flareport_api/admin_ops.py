"""Operations: reconcile on demand, dead letters (list, replay), stream status, health and metrics.

Reconcile and dead letters are use cases the web UI shares (``usecases.operations``); stream status, health and
metrics are read here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import ResponseError

from flareport_api import readstore, validation
from flareport_api.errors import error_response, json_response, query_int, read_body
from flareport_api.schemas import (
    Accepted,
    DeadLetterList,
    GroupStatus,
    HealthStatus,
    ReconcileRequest,
    Replayed,
    Status,
    StreamStatus,
)
from flareport_api.state import QueryParam, Route, context
from flareport_api.usecases import operations
from flareport_common.messages.base import utcnow
from flareport_common.metrics import render
from flareport_common.redisconn import ready
from flareport_common.replies import text

log = structlog.get_logger("flareport.api")


async def reconcile(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, ReconcileRequest)
    return json_response(await operations.reconcile(ctx, body.scope, verify=body.verify), status=202)


async def dead_letters(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    count = query_int(request, "count", default=100, minimum=1, maximum=1000)
    after = request.query.get("after") or None
    if after is not None:
        after = validation.entry_id(after, "after")
    return json_response(await operations.dead_letters(ctx, count, after))


async def replay(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    entry_id = validation.entry_id(request.match_info["entry_id"], "entry_id")
    return json_response(await operations.replay(ctx, entry_id))


async def _stream_status(request: web.Request, name: str) -> StreamStatus:
    ctx = context(request)
    length = int(await ctx.redis.xlen(name))
    try:
        groups = await ctx.redis.xinfo_groups(name) if length or await ctx.redis.exists(name) else []
    except ResponseError:
        groups = []
    return StreamStatus(
        stream=name,
        length=length,
        groups=tuple(
            GroupStatus(
                name=text(g["name"]),
                consumers=int(g["consumers"]),
                pending=int(g["pending"]),
                lag=None if g.get("lag") is None else int(g["lag"]),
            )
            for g in groups
        ),
    )


async def status(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    keys = ctx.keys
    streams = [
        await _stream_status(request, s)
        for s in (keys.events, keys.intents, keys.cf_jobs, keys.cf_jobs_zones, keys.cf_results)
    ]
    streams.append(await _stream_status(request, keys.dead_letters))
    now = utcnow()
    # The dns-worker's rate-limit state, in one round trip.
    reads = ctx.redis.pipeline(transaction=False)
    reads.get(keys.cf_pause_until)
    reads.hmget(keys.cf_rate_bucket, ["tokens", "at"])
    reads.hmget(keys.cf_rate_standing, ["left", "until"])
    raw_pause, (tokens, at), (left, until) = await reads.execute()
    paused = _ms_time(raw_pause)
    resets = _ms_time(until)
    standing = _number(left) if resets is not None and resets > now else None
    return json_response(
        Status(
            streams=tuple(streams),
            agents=len(await readstore.index_members(ctx.redis, keys.agents_index)),
            rules=len(await readstore.index_members(ctx.redis, keys.rules_index)),
            cloudflare_tokens=_number(tokens),
            cloudflare_tokens_at=_ms_time(at),
            cloudflare_paused_until=paused if paused is not None and paused > now else None,
            cloudflare_left=None if standing is None else max(0, int(standing)),
            cloudflare_resets_at=None if standing is None else resets,
            server_time=now,
        )
    )


def _number(raw: Any) -> float | None:
    try:
        return None if raw is None else float(text(raw))
    except ValueError:
        return None


def _ms_time(raw: Any) -> datetime | None:
    """A millisecond epoch timestamp as the dns-worker stores it, or None if absent or not a number."""
    value = _number(raw)
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response(HealthStatus(status="ok"))


async def readyz(request: web.Request) -> web.StreamResponse:
    """Unauthenticated, so it says only whether Redis answers: why not (an address, a URL, an error text) goes
    to the log, never to the caller."""
    ctx = context(request)
    try:
        # With Sentinel, a master being replaced is "not ready" too (flareport_common.redisconn.ready).
        up = await ready(ctx.redis)
    except Exception as exc:
        log.warning("api.readyz_redis_unavailable", error=str(exc), error_type=type(exc).__name__)
        up = False
    if not up:
        return error_response(503, "redis_unavailable", "Redis is not reachable")
    return json_response(HealthStatus(status="ok"))


async def metrics(request: web.Request) -> web.StreamResponse:
    body, content_type = render()
    return web.Response(body=body, headers={"Content-Type": content_type})


_ADMIN = (401, 422, 429)
_PAGE = (
    QueryParam("count", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
    QueryParam("after", {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"}, "next_after of the last page"),
)
ROUTES = [
    Route("POST", "/api/v1/reconcile", reconcile, "Recompute and re-verify targets", "operations", "admin",
          ReconcileRequest, Accepted, status=202, errors=(400, 413, *_ADMIN)),
    Route("GET", "/api/v1/dead-letters", dead_letters, "Messages the services gave up on", "operations", "admin",
          None, DeadLetterList, query=_PAGE, errors=_ADMIN),
    Route("POST", "/api/v1/dead-letters/{entry_id}/replay", replay, "Put a dead letter back on its stream",
          "operations", "admin", None, Replayed, errors=(404, 409, *_ADMIN)),
    Route("GET", "/api/v1/status", status, "Streams, consumer groups and lag", "operations", "admin", None, Status,
          errors=(401, 429)),
    Route("GET", "/healthz", healthz, "The process is up", "health", "none", None, HealthStatus),
    Route("GET", "/readyz", readyz, "Redis is reachable", "health", "none", None, HealthStatus, errors=(503,)),
    Route("GET", "/metrics", metrics, "Prometheus metrics", "health", "none", content_type="text/plain"),
]  # fmt: skip
