"""Fields every stream message carries, and the helpers to make them.

Messages are ``msgspec`` structs, frozen and keyword-only, tagged by a ``type`` field so that one union type
decodes a whole stream. Schemas evolve only by adding fields with defaults: an old consumer ignores a field
it does not know, a new consumer fills a missing field with its default. ``schema_version`` says which
revision wrote the message, for the rare case where a consumer must tell them apart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

SCHEMA_VERSION = 1


def new_id() -> str:
    """A random 32-hex-character identifier (a UUID4 without dashes)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every stream message. ``occurred_at`` is the producing server's clock, never an agent's."""

    id: str = msgspec.field(default_factory=new_id)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION
    correlation_id: str = ""
