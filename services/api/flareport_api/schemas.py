"""Request and response bodies of the admin API (the agent's are in ``flareport_common.protocol``).

Requests forbid unknown fields so a typo is a 422 naming the field, never a silently ignored setting.
Responses reuse the read-model structs as they are stored, so what an admin sees is what the reconciler wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from flareport_api.quotas import QuotaRefusal
from flareport_common.messages.rules import AccessSpec, OriginOptions, Rule, RuleOverride
from flareport_common.readmodel import AgentRecord, CommandRecord, RuleRecord
from flareport_common.validate import ACCESS_RULE_TYPES

KeyStatus = Literal["active", "revoked"]


def _with_defaults(source: type[msgspec.Struct], name: str) -> Any:
    """A copy of a read-model struct that writes every field: the stored documents omit defaults to stay small,
    but an admin reading ``status`` should not have to know that a missing one means "pending"."""
    fields: list[Any] = []
    for field in msgspec.structs.fields(source):
        if field.required:
            fields.append((field.name, field.type))
        elif field.default_factory is not msgspec.NODEFAULT:
            fields.append((field.name, field.type, msgspec.field(default_factory=field.default_factory)))
        else:
            fields.append((field.name, field.type, field.default))
    return msgspec.defstruct(name, fields, kw_only=True, frozen=True, module=__name__)


if TYPE_CHECKING:
    AgentView = AgentRecord
    RuleView = RuleRecord
    CommandView = CommandRecord
else:
    AgentView = _with_defaults(AgentRecord, "AgentView")
    RuleView = _with_defaults(RuleRecord, "RuleView")
    CommandView = _with_defaults(CommandRecord, "CommandView")


def view(record: msgspec.Struct, kind: Any) -> Any:
    return msgspec.convert(msgspec.structs.asdict(record), kind)


# ---- keys ----------------------------------------------------------------------------------------------------


class KeyCreateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    label: str


class KeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    label: str
    status: KeyStatus
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    agent_id: str | None = None


class KeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The only time the key itself is shown; the server keeps nothing but its SHA-256."""

    key: str
    info: KeyInfo
    # For the agent's host (flareport_common.onboarding): its .env (the master's URL as this request reached it,
    # and the key), and a compose file that reads both from that .env and holds no secret itself.
    env: str = ""
    compose: str = ""


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    keys: tuple[KeyInfo, ...]


class KeyRolledResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The new key is delivered to the running agent by a ``rotate_key`` command; it is not shown here."""

    agent_id: str
    new_key_id: str
    intent_id: str


# ---- agents --------------------------------------------------------------------------------------------------


class AgentList(msgspec.Struct, frozen=True, kw_only=True):
    agents: tuple[AgentView, ...]


class AgentDetail(msgspec.Struct, frozen=True, kw_only=True):
    agent: AgentView
    keys: tuple[KeyInfo, ...] = ()
    heartbeats: tuple[dict[str, Any], ...] = ()
    commands: tuple[CommandView, ...] = ()
    quota_refusals: tuple[QuotaRefusal, ...] = ()  # the last refusal of each limit, newest first


class EnrollRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Create a tunnel named ``tunnel_name`` or adopt ``tunnel_id`` (neither: a tunnel named after the agent)."""

    tunnel_name: str | None = None
    tunnel_id: str | None = None
    allowed_zones: tuple[str, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: tuple[str, ...] = ()


class PolicyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Change what an agent may publish; a field left out keeps its current value, an empty list of zones and
    suffixes means no restriction, ``origin_allow`` lists the origin kinds allowed beyond the default policy."""

    allowed_zones: tuple[str, ...] | None = None
    allowed_suffixes: tuple[str, ...] | None = None
    allow_wildcard: bool | None = None
    allow_apex: bool | None = None
    origin_allow: tuple[str, ...] | None = None


class RenameRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    display_name: str


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """An intent was written; the reconciler acts on it asynchronously."""

    intent_id: str
    stream_id: str


class RulePathRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which rule of the hostname (force delete, revert): its path, or none for the rule without a path."""

    path: str | None = None


class RuleOverrideRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An admin's override of a container rule (its path: none for the rule without one). A field left out keeps
    what the labels say; ``access: {}`` means no Access app whatever the labels ask for."""

    path: str | None = None
    service: str | None = None
    origin: OriginInput | None = None
    access: AccessInput | None = None


class RuleOverrideRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An override as the API keeps it (``Keys.api_rule_overrides``)."""

    hostname: str
    path: str | None = None
    override: RuleOverride
    updated_at: datetime


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One admin action the API recorded: when, who (``api`` for the master key, ``ui:<user>`` for a web UI
    session), what, on what, and the intent it wrote."""

    at: datetime
    actor: str
    action: str
    target: str
    intent_id: str


class AuditList(msgspec.Struct, frozen=True, kw_only=True):
    entries: tuple[AuditEntry, ...]


# ---- rules ---------------------------------------------------------------------------------------------------


class RuleList(msgspec.Struct, frozen=True, kw_only=True):
    rules: tuple[RuleView, ...]


class OriginInput(OriginOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``OriginOptions`` as an admin sends it (unknown fields refused)."""


class AccessInput(AccessSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``AccessSpec`` as an admin sends it (unknown fields refused)."""


class RuleInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``Rule`` as an admin sends it: the shared struct tolerates unknown fields (schema evolution between
    services), an admin's request must not (a typo would silently drop a setting)."""

    hostname: str
    service: str
    path: str | None = None
    zone_name: str | None = None
    origin: OriginInput = OriginInput()
    access: AccessInput | None = None
    adopt: bool = False

    def to_rule(self) -> Rule:
        return msgspec.convert(msgspec.to_builtins(self), Rule)


class ManualRuleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rule: RuleInput
    agent_id: str | None = None
    tunnel_id: str | None = None


class ManualRule(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: str
    rule: Rule
    agent_id: str | None = None
    tunnel_id: str | None = None
    updated_at: datetime


class ManualRuleList(msgspec.Struct, frozen=True, kw_only=True):
    rules: tuple[ManualRule, ...]


# A Cloudflare Access rule: an object with exactly one known rule type, e.g. {"email": {"email": "a@example.com"}}.
# The schema documents the shape; the API checks it itself (usecases.accessgroups.save) to name the exact entry.
AccessRuleObject = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description='A Cloudflare Access rule with exactly one rule type, e.g. {"email": {"email": "a@example.com"}}',
        extra_json_schema={
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"enum": sorted(ACCESS_RULE_TYPES)},
            "additionalProperties": {"type": "object"},
        },
    ),
]
# A chosen access group id, as ``access.group=<id>`` labels name it (checked with \Z by usecases.accessgroups.GROUP_ID).
GROUP_ID_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,63}$"
ChosenGroupId = Annotated[
    str,
    msgspec.Meta(
        description="The id labels reference (access.group=<id>): 1-64 lowercase letters, digits, '-', '_', '.', "
        "starting with a letter or digit. Default: derived from the name, or generated when that is taken.",
        extra_json_schema={"pattern": GROUP_ID_PATTERN, "minLength": 1, "maxLength": 64},
    ),
]


class AccessGroupRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    decision: Literal["allow", "deny", "bypass", "non_identity"] = "allow"
    # At least one include rule (a group without one is refused: it used to mean everyone).
    include: Annotated[tuple[AccessRuleObject, ...], msgspec.Meta(extra_json_schema={"minItems": 1})] = ()
    exclude: tuple[AccessRuleObject, ...] = ()
    require: tuple[AccessRuleObject, ...] = ()
    session_duration: str | None = None


class AccessGroupCreateRequest(AccessGroupRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/access-groups``: a group, optionally with the id labels will reference it by."""

    group_id: ChosenGroupId | None = None


class AccessGroup(msgspec.Struct, frozen=True, kw_only=True):
    group_id: str
    name: str
    decision: Literal["allow", "deny", "bypass", "non_identity"] = "allow"
    include: tuple[dict[str, Any], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    require: tuple[dict[str, Any], ...] = ()
    session_duration: str | None = None
    # None for the system groups, which are built in and never stored.
    updated_at: datetime | None = None
    # A built-in group (public-default-bypass, authenticated-default): resolved by the reconciler, never changed.
    system: bool = False
    # What a system group means (None for admin groups).
    description: str | None = None


class AccessGroupList(msgspec.Struct, frozen=True, kw_only=True):
    groups: tuple[AccessGroup, ...]


# ---- operations ----------------------------------------------------------------------------------------------


class ReconcileRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    scope: str = "all"
    verify: bool = True


class DeadLetterEntry(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: str
    source_stream: str
    source_id: str
    group: str
    consumer: str
    reason: str
    error: str
    deliveries: int
    occurred_at: datetime
    payload: dict[str, str]


class DeadLetterList(msgspec.Struct, frozen=True, kw_only=True):
    dead_letters: tuple[DeadLetterEntry, ...]
    # Pass as ``after`` to get the next page (None: no more).
    next_after: str | None = None


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    source_stream: str
    new_id: str


class GroupStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    consumers: int
    pending: int
    lag: int | None = None


class StreamStatus(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    length: int
    groups: tuple[GroupStatus, ...] = ()


class Status(msgspec.Struct, frozen=True, kw_only=True):
    streams: tuple[StreamStatus, ...]
    agents: int
    rules: int
    # The dns-worker's shared Cloudflare token bucket as it last wrote it (tokens left at that time; it refills
    # continuously) and, after a 429 from Cloudflare, when every replica may call again.
    cloudflare_tokens: float | None = None
    cloudflare_tokens_at: datetime | None = None
    cloudflare_paused_until: datetime | None = None
    # What Cloudflare's own count (its Ratelimit headers, every consumer of the account's budget included) still
    # allows the dns-workers, less what they keep for others, and when that window resets; None without a current
    # reading.
    cloudflare_left: int | None = None
    cloudflare_resets_at: datetime | None = None
    server_time: datetime


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Liveness or readiness, nothing more: these routes answer anyone, so no detail of why is given here."""

    status: str
