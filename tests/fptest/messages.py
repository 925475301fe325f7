"""Small message types for stream-runtime tests, built on the real message base."""

from __future__ import annotations

from flareport_common.messages.base import Message


class Work(Message, frozen=True, kw_only=True, tag="work"):
    n: int
    key: str = ""
