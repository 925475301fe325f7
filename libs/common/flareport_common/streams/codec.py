"""How a message sits in a stream entry: one field ``m`` holding the message as JSON.

JSON (not MessagePack) so that ``XRANGE`` in redis-cli and the dead-letter API show readable payloads; msgspec
keeps it fast enough that encoding is not what limits throughput.
"""

from __future__ import annotations

from typing import Any

import msgspec

FIELD = b"m"

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> dict[bytes, bytes]:
    return {FIELD: _encoder.encode(message)}


def message_json(fields: dict[Any, Any]) -> Any:
    """The message's JSON in an entry's fields (bytes or str keys, as the client gave them), None if absent."""
    return fields.get(FIELD, fields.get(FIELD.decode()))


def display_fields(fields: dict[Any, Any]) -> dict[str, str]:
    """An entry's fields as text, for dead letters and logs (bytes decoded with replacement)."""

    def text(value: Any) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    return {text(key): text(value) for key, value in fields.items()}
