"""Redis client construction from settings: one pool per process, bytes in and out (msgspec decodes)."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.settings import CommonSettings


def connect(settings: CommonSettings, *, max_connections: int = 64) -> aioredis.Redis:
    kwargs: dict[str, object] = {
        "max_connections": max_connections,
        "health_check_interval": 15,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
    }
    if settings.redis_db_index is not None:
        kwargs["db"] = settings.redis_db_index
    return aioredis.Redis.from_url(settings.redis_url, **kwargs)  # type: ignore[arg-type]
