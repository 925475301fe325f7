"""The dead-letter stream: messages the runtime gave up on, kept whole so an operator can inspect or replay."""

from __future__ import annotations

from typing import Literal

from flareport_common.messages.base import Message

DeadLetterReason = Literal["undecodable", "permanent_error", "delivery_cap"]


class DeadLetter(Message, frozen=True, kw_only=True, tag="dead_letter"):
    source_stream: str
    source_id: str
    group: str
    consumer: str
    reason: DeadLetterReason
    error: str
    deliveries: int
    # The original entry's fields exactly as read (decoded as UTF-8 with replacement for display).
    payload: dict[str, str]


DeadLetterMessage = DeadLetter
