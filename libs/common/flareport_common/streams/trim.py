"""Trimming a stream below what every consumer group has handled, never below what one still needs.

Producers add without ``MAXLEN``: a length cap drops the oldest entries whether or not they were read, so a
flood could push out an event that was already answered 200. Instead the consumers trim, from time to time, with
``XTRIM MINID ~`` below the first entry some group still needs: the oldest entry of its pending list (delivered,
not acknowledged) or, when that list is empty, the entry after its last-delivered id. A stream without any group
is never trimmed (nobody has read it yet). ``~`` lets Redis drop only whole macro-nodes below that id: it may keep
a few handled entries, never remove a needed one. One Lua script (``lua/trim_handled.lua``) reads the groups and
trims atomically, so a group created or a message delivered meanwhile cannot be raced.

What bounds each stream then is whatever limits its producers (docs/stream-runtime.md, "Trimming").
"""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common import lua

# Registered (EVALSHA): the trimmer runs it on a client, never inside a pipeline or MULTI.
_TRIM_HANDLED = lua.load("flareport_common", "trim_handled")


class StreamTrimmer:
    """Trims one stream below what all its groups have handled (``trim()`` answers how many were removed)."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self._stream = stream
        self._script = redis.register_script(_TRIM_HANDLED.source)

    async def trim(self) -> int:
        return int(await self._script(keys=[self._stream]))
