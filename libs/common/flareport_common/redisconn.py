"""Redis client construction from settings: one pool per process, bytes in and out (msgspec decodes).

The pool blocks when all its connections are busy (up to ``wait_seconds``) instead of failing at once: a burst
that briefly needs more connections than the pool holds must slow down, not turn into handler errors, retries
and eventually dead letters.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from flareport_common.settings import CommonSettings


def connect(settings: CommonSettings, *, max_connections: int = 64, wait_seconds: float = 20.0) -> aioredis.Redis:
    kwargs: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": wait_seconds,
        "health_check_interval": 15,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
    }
    if settings.redis_db_index is not None:
        kwargs["db"] = settings.redis_db_index
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, **kwargs)
    return aioredis.Redis(connection_pool=pool)
