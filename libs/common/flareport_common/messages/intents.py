"""The intents stream: what admins ask for through the API. The reconciler turns intents into state,
Cloudflare jobs and agent commands; the API never acts on them itself.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from flareport_common.messages.base import Message
from flareport_common.messages.rules import Rule, RuleOverride


class AgentEnrolled(Message, frozen=True, kw_only=True, tag="agent_enrolled"):
    """Enrol an agent: create a tunnel named ``tunnel_name``, or adopt the existing ``tunnel_id``."""

    agent_id: str
    tunnel_name: str | None = None
    tunnel_id: str | None = None
    # Zones / hostname suffixes this agent may publish (empty = no restriction).
    allowed_zones: tuple[str, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    # The agent's publishing policy (see ``AgentPolicyChanged``); the defaults deny all three.
    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: tuple[str, ...] = ()


class AgentPolicyChanged(Message, frozen=True, kw_only=True, tag="agent_policy_changed"):
    """Replace what an agent may publish: its allow-lists (empty = no restriction), whether it may publish
    wildcard names and zone apexes, and the origin kinds it may use beyond the default origin policy."""

    agent_id: str
    allowed_zones: tuple[str, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: tuple[str, ...] = ()


class AgentRenamed(Message, frozen=True, kw_only=True, tag="agent_renamed"):
    agent_id: str
    display_name: str


class AgentDecommissioned(Message, frozen=True, kw_only=True, tag="agent_decommissioned"):
    """Stop the agent's tunnel, remove its records and ingress, delete the tunnel if Flareport created it."""

    agent_id: str


class AgentRemoved(Message, frozen=True, kw_only=True, tag="agent_removed"):
    """Forget an (offline) agent; its published rules are removed like a decommission."""

    agent_id: str


class KeyRolled(Message, frozen=True, kw_only=True, tag="key_rolled"):
    """A new key was made for a bound agent; the reconciler delivers it with a ``rotate_key`` command.

    The key itself waits under ``Keys.agent_secret(agent_id, secret_ref)`` until the agent acknowledges that
    command: the intents stream keeps only the reference (``new_key`` is set only by an API of an older release).
    """

    agent_id: str
    key_id: str
    new_key: str = ""
    secret_ref: str | None = None


class AgentKeysRevoked(Message, frozen=True, kw_only=True, tag="agent_keys_revoked"):
    """The agent's last valid key was revoked: it loses every hostname it claims, and events it sent before
    ``occurred_at`` are ignored. A key issued to it later brings it back (it registers and reports again)."""

    agent_id: str


class HostnameAssigned(Message, frozen=True, kw_only=True, tag="hostname_assigned"):
    """An admin settles a contested hostname: only ``owner`` (``agent:<id>`` or ``tunnel:<id>``) may publish it,
    whoever claimed it first; ``owner=None`` lifts the assignment (first claim wins again)."""

    hostname: str
    owner: str | None = None


class ManualRuleUpserted(Message, frozen=True, kw_only=True, tag="manual_rule_upserted"):
    """A rule created in the UI/API: never expires and is never touched by container events."""

    rule_id: str
    rule: Rule
    # The tunnel that serves it: an agent's tunnel, or an explicit tunnel id.
    agent_id: str | None = None
    tunnel_id: str | None = None


class ManualRuleDeleted(Message, frozen=True, kw_only=True, tag="manual_rule_deleted"):
    rule_id: str


class RuleForceDeleted(Message, frozen=True, kw_only=True, tag="rule_force_deleted"):
    """An admin removes a rule in ``pending_deletion`` now instead of at the end of its grace period: the claims of
    ``hostname + path`` whose containers are stopped are deleted at once. A claim whose container runs again (its
    deletion was cancelled) is left as it is, as the grace period would leave it. ``requested_by`` names the admin
    for the log (the API's audit list keeps it too)."""

    hostname: str
    path: str | None = None
    requested_by: str = ""


class RuleOverrideSet(Message, frozen=True, kw_only=True, tag="rule_override_set"):
    """An admin overrides what container labels say for ``hostname + path`` (``RuleOverride``): it replaces any
    earlier override of that rule and applies to whichever container publishes it, until reverted."""

    hostname: str
    path: str | None = None
    override: RuleOverride


class RuleOverrideCleared(Message, frozen=True, kw_only=True, tag="rule_override_cleared"):
    """Revert to labels: the rule ``hostname + path`` is again what its container's labels say."""

    hostname: str
    path: str | None = None


class AccessGroupUpserted(Message, frozen=True, kw_only=True, tag="access_group_upserted"):
    """A reusable Access policy referenced by ``access.group(s)`` labels."""

    group_id: str
    name: str
    decision: Literal["allow", "deny", "bypass", "non_identity"] = "allow"
    include: tuple[dict[str, Any], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    require: tuple[dict[str, Any], ...] = ()
    session_duration: str | None = None


class AccessGroupDeleted(Message, frozen=True, kw_only=True, tag="access_group_deleted"):
    group_id: str


class TunnelRestartRequested(Message, frozen=True, kw_only=True, tag="tunnel_restart_requested"):
    """Replace the agent's cloudflared container (``restart_tunnel``): the same image, or ``image``, which the agent
    accepts only when it is its own configured ``CLOUDFLARED_IMAGE`` (a redeploy)."""

    agent_id: str
    tunnel_id: str
    image: str | None = None


class TunnelsRefreshRequested(Message, frozen=True, kw_only=True, tag="tunnels_refresh_requested"):
    """An admin wants the tunnels read model listed again now (the reconciler sends ``refresh_tunnels``)."""


class ReconcileRequested(Message, frozen=True, kw_only=True, tag="reconcile_requested"):
    """Recompute and re-verify targets; ``scope`` is ``all`` or a target key such as ``zone:example.com``."""

    scope: str = "all"
    verify: bool = True
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


IntentMessage = (
    AgentEnrolled
    | AgentPolicyChanged
    | AgentRenamed
    | AgentDecommissioned
    | AgentRemoved
    | KeyRolled
    | AgentKeysRevoked
    | HostnameAssigned
    | ManualRuleUpserted
    | ManualRuleDeleted
    | RuleForceDeleted
    | RuleOverrideSet
    | RuleOverrideCleared
    | AccessGroupUpserted
    | AccessGroupDeleted
    | ReconcileRequested
    | TunnelRestartRequested
    | TunnelsRefreshRequested
)
