"""The read model: what the API serves about agents, rules and commands, stored in Redis as JSON documents.

Ownership (one writer per document, so no cross-service locking is needed):
- the reconciler writes ``AgentRecord`` (``Keys.agent``, indexed in ``Keys.agents_index``) and ``RuleRecord``
  (``Keys.rule``, indexed in ``Keys.rules_index``), from events, intents and Cloudflare results;
- the API writes key material (``Keys.api_key``) and each agent's ``CommandRecord`` history
  (``Keys.agent_command_history``, a capped list, newest first) when the agent acknowledges a command.
Readers decode with these structs; writers evolve them only by adding fields with defaults.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from flareport_common.messages.events import TunnelState
from flareport_common.messages.rules import AccessSpec, OriginOptions, RuleError
from flareport_common.protocol import AgentStatus

RuleStatus = Literal["pending", "active", "error", "pending_deletion", "conflict"]
RuleSourceKind = Literal["container", "manual"]


class ContainerLabelErrors(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Labels of one running container that did not parse (its valid rules are published regardless)."""

    container_id: str
    container_name: str = ""
    errors: tuple[RuleError, ...] = ()


class AgentRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    agent_id: str
    display_name: str
    status: AgentStatus = "pending"
    hostname: str = ""
    version: str = ""
    capabilities: tuple[str, ...] = ()
    registered_at: datetime | None = None
    last_seen: datetime | None = None  # server time of the last heartbeat or event
    last_seq: int = 0
    tunnel_id: str | None = None
    tunnel_name: str | None = None
    tunnel_created_by_flareport: bool = False
    tunnel: TunnelState = TunnelState()
    docker_reachable: bool = True
    allowed_zones: tuple[str, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    # The admin's publishing policy for this agent, on top of the global one (docs/security.md): may its rules
    # publish wildcard names / a zone's apex, and which denied origin kinds (``flareport_common.policy``) it may use.
    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: tuple[str, ...] = ()
    error: str | None = None
    # When its last valid key was revoked (its claims were released); events it sent before are ignored. A later
    # registration (a new key) clears it.
    revoked_at: datetime | None = None
    # Running containers of this agent whose labels have errors, as the agent last reported them.
    label_errors: tuple[ContainerLabelErrors, ...] = ()


class RuleRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One published hostname (+ path), wherever it came from, with its Cloudflare state."""

    key: str  # hostname + path
    hostname: str
    service: str
    path: str | None = None
    source: RuleSourceKind = "container"
    agent_id: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    manual_rule_id: str | None = None
    zone_name: str | None = None
    tunnel_id: str | None = None
    origin: OriginOptions = OriginOptions()
    access: AccessSpec | None = None
    status: RuleStatus = "pending"
    error: str | None = None  # the reason, for status error / conflict
    error_code: int | None = None  # Cloudflare's code when Cloudflare refused it
    delete_at: datetime | None = None  # for pending_deletion
    # The fields ("service", "origin", "access") an admin's override set instead of the container's labels.
    overridden: tuple[str, ...] = ()
    dns_state: str | None = None  # "active" | "error" | "conflict" | None (not yet applied)
    ingress_state: str | None = None
    access_state: str | None = None
    # Per part ("dns", "ingress", "access"): what Flareport adopted there instead of creating it, e.g. a DNS record
    # DockFlare made. Kept while the part's inputs are unchanged, like its state.
    adopted: dict[str, str] = msgspec.field(default_factory=dict)
    updated_at: datetime | None = None


class CommandRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    command_id: str
    command_type: str
    issued_at: datetime | None = None
    acked_at: datetime | None = None
    ok: bool | None = None
    error: str | None = None
    result: dict[str, Any] = msgspec.field(default_factory=dict)
