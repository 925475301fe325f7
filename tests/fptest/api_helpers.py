"""Helpers for API tests: read a stream's messages back as typed structs."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

MASTER = "master-key-for-tests-0123456789"


async def stream_messages(redis: aioredis.Redis, stream: str, kind: Any) -> list[Any]:
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)
    entries: Any = await redis.xrange(stream)
    return [decoder.decode(fields[b"m"]) for _, fields in entries]


def tag(message: msgspec.Struct) -> str:
    """A message's ``type`` tag (msgspec keeps it in the struct config, not as an attribute)."""
    return str(type(message).__struct_config__.tag)
