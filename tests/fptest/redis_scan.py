"""Find every Redis key that still holds a secret, whatever its type (string, hash, list, set, zset, stream)."""

from __future__ import annotations

from typing import Any

import redis


def _values(client: redis.Redis, name: bytes) -> list[Any]:
    kind = client.type(name)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        return [client.get(name)]
    if kind == "hash":
        return [part for item in client.hgetall(name).items() for part in item]
    if kind == "list":
        return list(client.lrange(name, 0, -1))
    if kind == "set":
        return list(client.smembers(name))
    if kind == "zset":
        return list(client.zrange(name, 0, -1))
    if kind == "stream":
        entries: Any = client.xrange(name)
        return [part for _, fields in entries for item in (fields or {}).items() for part in item]
    return []


def keys_holding(client: redis.Redis, needle: str, match: str = "*") -> list[str]:
    """Names of the keys matching ``match`` whose value contains ``needle`` anywhere."""
    wanted = needle.encode()
    found = []
    for name in client.scan_iter(match=match, count=1000):
        if any(isinstance(v, bytes) and wanted in v for v in _values(client, name)):
            found.append(name.decode())
    return sorted(found)
