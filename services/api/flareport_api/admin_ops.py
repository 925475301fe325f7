"""Operations: reconcile on demand, dead letters (list, replay), stream status, health and metrics.

Replay puts a dead letter's original fields back on the stream it came from and deletes the dead letter,
in one MULTI: the message is in exactly one of the two places. Only streams under this deployment's key
prefix are accepted as replay targets, so a forged dead letter cannot make the API write elsewhere.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from aiohttp import web
from redis.exceptions import ResponseError

from flareport_api import readstore, validation
from flareport_api.admin_agents import send_intent
from flareport_api.errors import ApiError, error_response, json_response, not_found, query_int, read_body
from flareport_api.schemas import (
    Accepted,
    DeadLetterEntry,
    DeadLetterList,
    GroupStatus,
    HealthStatus,
    ReconcileRequest,
    Replayed,
    Status,
    StreamStatus,
)
from flareport_api.state import QueryParam, Route, context
from flareport_common import validate
from flareport_common.messages.base import utcnow
from flareport_common.messages.deadletters import DeadLetter
from flareport_common.messages.intents import ReconcileRequested
from flareport_common.metrics import render
from flareport_common.streams.codec import FIELD

log = structlog.get_logger("flareport.api")
_AFTER_THE_LAST = f"({validate.MAX_STREAM_PART}-{validate.MAX_STREAM_PART}"
_scope = re.compile(r"^(?:all|(?:agent|zone|tunnel|access|rule):[A-Za-z0-9*._:/-]{1,253})\Z")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def reconcile(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, ReconcileRequest)
    if not _scope.match(body.scope):
        raise ApiError(422, "invalid_body", "scope must be 'all' or kind:name (e.g. zone:example.com)", field="scope")
    return await send_intent(ctx, ReconcileRequested(scope=body.scope, verify=body.verify))


def _letter(entry_id: Any, fields: Any) -> DeadLetterEntry | None:
    raw = fields.get(FIELD, fields.get(FIELD.decode()))
    try:
        letter = msgspec.json.decode(raw, type=DeadLetter)
    except (msgspec.DecodeError, TypeError):
        return None
    return DeadLetterEntry(
        entry_id=_text(entry_id),
        source_stream=letter.source_stream,
        source_id=letter.source_id,
        group=letter.group,
        consumer=letter.consumer,
        reason=letter.reason,
        error=letter.error,
        deliveries=letter.deliveries,
        occurred_at=letter.occurred_at,
        payload=letter.payload,
    )


async def dead_letters(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    count = query_int(request, "count", default=100, minimum=1, maximum=1000)
    after = request.query.get("after") or None
    start = "-" if after is None else "(" + validation.entry_id(after, "after")
    if start == _AFTER_THE_LAST:  # no id can follow it (Redis would answer an error, not an empty range)
        return json_response(DeadLetterList(dead_letters=()))
    entries = await ctx.redis.xrange(ctx.keys.dead_letters, start, "+", count=count) or []
    letters = [letter for entry_id, fields in entries if (letter := _letter(entry_id, fields)) is not None]
    next_after = _text(entries[-1][0]) if len(entries) == count else None
    return json_response(DeadLetterList(dead_letters=tuple(letters), next_after=next_after))


async def replay(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    entry_id = validation.entry_id(request.match_info["entry_id"], "entry_id")
    entries = await ctx.redis.xrange(ctx.keys.dead_letters, entry_id, entry_id, count=1)
    if not entries:
        raise not_found("dead letter", entry_id)
    letter = _letter(*entries[0])
    if letter is None:
        raise ApiError(409, "undecodable_dead_letter", "this dead letter cannot be read; inspect it with redis-cli")
    if not letter.source_stream.startswith(ctx.keys.prefix) or letter.source_stream == ctx.keys.dead_letters:
        raise ApiError(409, "foreign_stream", f"source stream {letter.source_stream!r} is not one of ours")
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.xadd(letter.source_stream, letter.payload)  # type: ignore[arg-type]
    pipe.xdel(ctx.keys.dead_letters, entry_id)
    new_id, _ = await pipe.execute()
    return json_response(Replayed(source_stream=letter.source_stream, new_id=_text(new_id)))


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
                name=_text(g["name"]),
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
    streams = [await _stream_status(request, s) for s in (keys.events, keys.intents, keys.cf_jobs, keys.cf_results)]
    streams.append(await _stream_status(request, keys.dead_letters))
    now = utcnow()
    paused = _ms_time(await ctx.redis.get(keys.cf_pause_until))
    tokens, at = await ctx.redis.hmget(keys.cf_rate_bucket, ["tokens", "at"])
    return json_response(
        Status(
            streams=tuple(streams),
            agents=len(await readstore.index_members(ctx.redis, keys.agents_index)),
            rules=len(await readstore.index_members(ctx.redis, keys.rules_index)),
            cloudflare_tokens=_number(tokens),
            cloudflare_tokens_at=_ms_time(at),
            cloudflare_paused_until=paused if paused is not None and paused > now else None,
            server_time=now,
        )
    )


def _number(raw: Any) -> float | None:
    try:
        return None if raw is None else float(_text(raw))
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
        await ctx.redis.ping()
    except Exception as exc:
        log.warning("api.readyz_redis_unavailable", error=str(exc), error_type=type(exc).__name__)
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
