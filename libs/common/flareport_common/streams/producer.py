"""Adding messages to streams. Never with ``MAXLEN``: a length cap would drop entries no consumer has read yet.

Streams are trimmed by their consumers, below what every group has handled (``streams.trim``); what keeps a
stream bounded is what limits its producers (the API's backlog limit for the events stream, see
docs/stream-runtime.md, "Trimming").
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis

from flareport_common.metrics import STREAM_PRODUCED
from flareport_common.replies import text
from flareport_common.streams.codec import encode


class Producer:
    def __init__(self, redis: aioredis.Redis, *, metrics_label: str | None = None):
        self._redis = redis
        self._label = metrics_label

    async def send(self, stream: str, message: msgspec.Struct) -> str:
        entry_id = await self._redis.xadd(stream, encode(message))  # type: ignore[arg-type]
        STREAM_PRODUCED.labels(self._label or stream).inc()
        return text(entry_id)

    async def send_many(self, stream: str, messages: Iterable[msgspec.Struct]) -> list[str]:
        """Add several messages in one round trip (a non-transactional pipeline keeps their order)."""
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for message in messages:
            pipe.xadd(stream, encode(message))  # type: ignore[arg-type]
            count += 1
        if count == 0:
            return []
        ids = await pipe.execute()
        STREAM_PRODUCED.labels(self._label or stream).inc(count)
        return [text(i) for i in ids]
