"""Per-agent quota refusals: one way to refuse, record and count an agent that went over a limit.

A refusal is an ``ApiError`` (429 for rates and concurrency, with ``Retry-After``; 413 for sizes) whose
``field`` is the quota's name, so the agent's log and the admin's tools say exactly which limit was hit. The last
refusal of each limit is kept per agent (``Keys.agent_quota_refusals``) for the agent's page, and counted in
``flareport_api_quota_refusals_total`` by limit (never by agent: 1,000 agents must not make 1,000 series).
Recording is best effort: a refusal must not turn into a 500 because Redis hiccuped while noting it.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from flareport_api.errors import ApiError
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow

log = logging.getLogger(__name__)

QUOTA_REFUSALS = Counter(
    "flareport_api_quota_refusals_total", "Agent requests refused for exceeding a per-agent quota, by limit.", ["limit"]
)

# Redis keeps at most this many distinct limit names per agent (they are our own names; the bound is a guard).
_MAX_LIMITS = 32


class QuotaRefusal(msgspec.Struct, frozen=True, kw_only=True):
    """The last refusal of one limit for one agent, as the agent's page shows it."""

    limit: str
    status: int
    message: str
    at: datetime
    count: int = 1


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(QuotaRefusal)


async def refuse(
    redis: aioredis.Redis,
    keys: Keys,
    agent_id: str,
    limit: str,
    message: str,
    *,
    status: int = 429,
    retry_after: float | None = None,
) -> ApiError:
    """Record the refusal and return the error to raise (``raise await refuse(...)``)."""
    QUOTA_REFUSALS.labels(limit).inc()
    key = keys.agent_quota_refusals(agent_id)
    try:
        raw = await redis.hget(key, limit)
        count = (_decoder.decode(raw).count + 1) if raw is not None else 1
        if raw is None and await redis.hlen(key) >= _MAX_LIMITS:
            count = 0  # not recorded; still refused
        if count:
            entry = QuotaRefusal(limit=limit, status=status, message=message, at=utcnow(), count=count)
            await redis.hset(key, limit, _encoder.encode(entry))
    except (RedisError, msgspec.DecodeError) as exc:
        log.warning("could not record quota refusal %s for agent %s: %s", limit, agent_id, exc)
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return ApiError(status, "quota_exceeded", message, field=limit, headers=headers)


async def refusals(redis: aioredis.Redis, keys: Keys, agent_id: str) -> list[QuotaRefusal]:
    """The agent's recorded refusals, newest first (entries that do not decode are skipped)."""
    found: list[QuotaRefusal] = []
    for raw in (await redis.hgetall(keys.agent_quota_refusals(agent_id))).values():
        try:
            found.append(_decoder.decode(raw))
        except msgspec.DecodeError:
            continue
    return sorted(found, key=lambda r: r.at, reverse=True)
