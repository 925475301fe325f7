"""The agent protocol: HTTP bodies between an agent and the API (``/api/v1/agents/...``).

Shared by the agent (client) and the API (server) so the two cannot drift. Container events travel as the same
structs the events stream carries; the API overrides ``agent_id`` with the authenticated one and stamps
``occurred_at`` with server time before adding them to the stream, so nothing an agent claims about identity or
time is trusted.

Routes (all with ``Authorization: Bearer <agent key>``):
  POST /api/v1/agents/register                          RegisterRequest -> RegisterResponse
  POST /api/v1/agents/{id}/events                       EventBatch -> EventBatchResponse
  GET  /api/v1/agents/{id}/commands?wait=<seconds>      -> CommandBatch (empty after ``wait`` with nothing new)
  POST /api/v1/agents/{id}/commands/{command_id}/ack    CommandAckRequest -> CommandAckResponse
  POST /api/v1/agents/{id}/heartbeat                    HeartbeatRequest -> HeartbeatResponse
Errors are ``ErrorResponse`` with a 4xx/5xx status: 401 unknown or revoked key (``code`` says which), 403 another
agent's id, 404 unknown command, 409 stale sequence numbers are *not* an error (see EventBatchResponse), 413 body
too large, 422 invalid body (``field`` names the offending field), 429 with ``Retry-After``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from flareport_common.messages.commands import CommandMessage
from flareport_common.messages.events import (
    ContainerDie,
    ContainerStart,
    ContainerStop,
    Inventory,
    Starting,
    TunnelState,
    TunnelStatus,
)

AgentStatus = Literal["pending", "active", "offline", "decommissioning", "decommissioned", "removed"]

# What an agent may send in an event batch (heartbeats and command acks have their own routes).
AgentEvent = ContainerStart | ContainerStop | ContainerDie | Inventory | TunnelStatus


class RegisterRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    display_name: str
    hostname: str = ""
    version: str = ""
    capabilities: tuple[str, ...] = ()
    # The tunnel this agent was told to run and the SHA-256 (hex) of its token, from the agent's saved state. A
    # control plane that lost its record of the agent restores the enrolment from them, after the dns-worker has
    # checked that the hash matches that tunnel's token (so the claim cannot obtain another tunnel's token).
    tunnel_id: str | None = None
    tunnel_token_sha256: str | None = None


class RegisterResponse(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    status: AgentStatus
    # The highest event sequence number the control plane accepted from this agent (0 = none): an agent that lost
    # its data directory continues from here instead of having its events ignored as stale.
    last_seq: int = 0
    heartbeat_interval_seconds: float = 15.0
    poll_wait_seconds: float = 25.0


class EventBatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    events: tuple[AgentEvent, ...]
    # The labelled containers the agent saw created (lately: ``flareport_agent.tracker.STARTING_SECONDS``) and not
    # yet started when it sent the batch. ``docker compose up`` creates every container before starting them: above
    # 0, more starts are on their way; 0 after such a run says it is complete. Only a coalescing hint (a job waits a
    # window, or goes at once): it never decides what is published. Absent: the agent does not say.
    starting: Starting | None = None


class EventBatchResponse(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int
    # Sequence numbers at or below the last accepted one: already applied, not added again.
    duplicates: tuple[int, ...] = ()
    last_seq: int = 0


class CommandEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    command_id: str  # the command stream entry id; acknowledge with it
    command: CommandMessage
    deliveries: int = 1


class CommandBatch(msgspec.Struct, frozen=True, kw_only=True):
    commands: tuple[CommandEnvelope, ...] = ()


class CommandAckRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ok: bool
    error: str | None = None
    result: dict[str, Any] = msgspec.field(default_factory=dict)


class CommandAckResponse(msgspec.Struct, frozen=True, kw_only=True):
    acked: bool


class HeartbeatRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tunnel: TunnelState = TunnelState()
    docker_reachable: bool = True
    agent_version: str = ""


class HeartbeatResponse(msgspec.Struct, frozen=True, kw_only=True):
    status: AgentStatus
    server_time: datetime
    # True when the control plane lost this agent's record (e.g. Redis data loss): register again, resend inventory.
    reregister: bool = False


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str  # machine-readable, e.g. "invalid_body", "key_revoked", "forbidden_agent"
    message: str
    field: str | None = None


class ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail
