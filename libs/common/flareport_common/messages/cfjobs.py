"""The Cloudflare jobs stream: level-based work for the dns-worker.

A job names one target (a tunnel, a zone, an Access app) and carries the complete desired state of that target
with its ``version`` (a hash of the desired state). The worker makes Cloudflare match it and skips a job whose
version is already applied, so duplicates and reordering are harmless.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from flareport_common.messages.base import Message
from flareport_common.messages.rules import OriginOptions
from flareport_common.messages.trace import Trace


class IngressEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One desired ingress rule of a tunnel, in order."""

    hostname: str
    service: str
    path: str | None = None
    origin: OriginOptions = OriginOptions()
    # Where the rule comes from, for results and errors: "agent:<id>/<container>" or "manual:<rule id>".
    source: str = ""
    # An Access app protects ``path``: cloudflared must match exactly that literal prefix, not the unanchored
    # regular expression a path otherwise is (see the dns-worker's ingress_plan).
    protected: bool = False


class DesiredRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A proxied CNAME ``name -> <tunnel_id>.cfargotunnel.com`` wanted in one zone."""

    name: str
    tunnel_id: str
    adopt: bool = False
    source: str = ""


class AccessPolicyDef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One Cloudflare Access policy: who (``include``, narrowed by ``exclude`` and ``require``) gets ``decision``."""

    name: str
    decision: Literal["allow", "deny", "bypass", "non_identity"]
    include: tuple[dict[str, Any], ...]
    exclude: tuple[dict[str, Any], ...] = ()
    require: tuple[dict[str, Any], ...] = ()
    session_duration: str | None = None


class ReusablePolicyRef(msgspec.Struct, frozen=True, kw_only=True):
    """An access group as the account-level reusable policy ``flareport group <group_id>`` with this content."""

    group_id: str
    policy: AccessPolicyDef


class DesiredAccessApp(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A self-hosted Access application exactly as the reconciler resolved it (flareport_common.access): every
    group, system group and label already turned into policies, so the dns-worker only writes it.

    Exactly one of ``reusable`` (links to account-level policies, one per group, in order) and ``inline``
    (app-scoped policies) is non-empty: Cloudflare does not mix the two kinds in one app.
    """

    hostname: str
    path: str | None = None  # a literal path prefix (never a regular expression); the app's domain is host + path
    name: str | None = None  # None: the domain
    session_duration: str = "24h"
    app_launcher_visible: bool = False
    allowed_idps: tuple[str, ...] = ()
    auto_redirect_to_identity: bool = False
    reusable: tuple[ReusablePolicyRef, ...] = ()
    inline: tuple[AccessPolicyDef, ...] = ()


class EnsureTunnel(Message, frozen=True, kw_only=True, tag="ensure_tunnel"):
    """Find (by id or name) or create a remotely managed tunnel, and fetch its token."""

    agent_id: str
    tunnel_name: str | None = None
    tunnel_id: str | None = None
    create: bool = True
    # Set when an agent re-claims its tunnel after the control plane lost its record (total loss of Redis data):
    # the SHA-256 (hex) of the token the agent runs with. The worker hands out the token only if it matches, so a
    # claim proves the agent already held that tunnel's token and cannot be used to obtain another tunnel's token.
    token_sha256: str | None = None

    @property
    def target(self) -> str:
        return f"agent:{self.agent_id}"


class SyncTunnelIngress(Message, frozen=True, kw_only=True, tag="sync_tunnel_ingress"):
    tunnel_id: str
    version: str
    rules: tuple[IngressEntry, ...] = ()
    # False while the control plane rebuilds after a loss of its data: rules already in the tunnel's configuration
    # and not listed are kept (after the listed ones, ahead of the catch-all) instead of removed.
    prune: bool = True
    # The trace of the oldest event the job was planned from (messages.trace); not part of ``version``.
    trace: Trace | None = None

    @property
    def target(self) -> str:
        return f"tunnel:{self.tunnel_id}"


class SyncDnsZone(Message, frozen=True, kw_only=True, tag="sync_dns_zone"):
    """The complete set of records Flareport wants in one zone (records it owns but not listed are removed)."""

    zone_name: str
    version: str
    records: tuple[DesiredRecord, ...] = ()
    # False while the control plane rebuilds after a loss of its data: owned records not listed are kept, because
    # the agents that want them may not have reported yet.
    prune: bool = True
    # The trace of the oldest event the job was planned from (messages.trace); not part of ``version``.
    trace: Trace | None = None

    @property
    def target(self) -> str:
        return f"zone:{self.zone_name}"


class SyncAccessApp(Message, frozen=True, kw_only=True, tag="sync_access_app"):
    """Make the Access app of ``hostname + path`` match ``app``; ``app=None`` deletes our app."""

    hostname: str
    path: str | None = None
    version: str
    app: DesiredAccessApp | None = None
    # The trace of the oldest event the job was planned from (messages.trace); not part of ``version``.
    trace: Trace | None = None

    @property
    def target(self) -> str:
        return f"access:{self.hostname}{self.path or ''}"


class DeleteTunnel(Message, frozen=True, kw_only=True, tag="delete_tunnel"):
    """Delete a tunnel Flareport created (never one it adopted)."""

    tunnel_id: str
    agent_id: str | None = None

    @property
    def target(self) -> str:
        return f"tunnel:{self.tunnel_id}"


class VerifyTarget(Message, frozen=True, kw_only=True, tag="verify_target"):
    """Re-read a target from Cloudflare, report drift and repair it. ``target`` as in the other jobs."""

    target: str


class RefreshTunnels(Message, frozen=True, kw_only=True, tag="refresh_tunnels"):
    """List the account's tunnels and connectors into their read model now (``flareport_common.tunnelview``),
    instead of at the next periodic listing. Read-only: no result is published, the read model is the answer."""

    @property
    def target(self) -> str:
        return "account:tunnels"


CfJobMessage = (
    EnsureTunnel | SyncTunnelIngress | SyncDnsZone | SyncAccessApp | DeleteTunnel | VerifyTarget | RefreshTunnels
)
