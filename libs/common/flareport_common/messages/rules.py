"""The typed form of a published route, shared by the agent (which parses labels into it), the API (manual
rules), the reconciler (desired state) and the dns-worker (Cloudflare writes).

A rule's identity is its hostname plus path, as in DockFlare. Field names are Flareport's; the mapping to
cloudflared's ``originRequest`` keys lives with the code that writes tunnel configurations.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# DockFlare's values; "custom" takes the policies from ``custom_rules`` (flareport_common.access).
AccessPolicy = Literal["bypass", "authenticate", "default_tld", "custom"]


class OriginOptions(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Per-rule cloudflared ``originRequest`` options; ``None`` means "not set, use cloudflared's default"."""

    no_tls_verify: bool | None = None
    origin_server_name: str | None = None
    http_host_header: str | None = None
    http2_origin: bool | None = None
    disable_chunked_encoding: bool | None = None
    match_sni_to_host: bool | None = None


class AccessSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the access.* labels (or a manual rule) ask for. An empty spec means no Access app."""

    policy: AccessPolicy | None = None
    groups: tuple[str, ...] = ()
    name: str | None = None
    session_duration: str | None = None
    app_launcher_visible: bool | None = None
    allowed_idps: tuple[str, ...] = ()
    auto_redirect_to_identity: bool | None = None
    custom_rules: tuple[dict[str, Any], ...] = ()


class RuleOverride(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An admin's override of what a container's labels say for one hostname + path; a field left ``None`` keeps
    the labels' value. ``access=AccessSpec()`` (empty) means "no Access app", whatever the labels ask for. Admin
    state: it wins over the agent's labels until the admin reverts it, and no agent can set or clear it."""

    service: str | None = None
    origin: OriginOptions | None = None
    access: AccessSpec | None = None

    def fields(self) -> tuple[str, ...]:
        """The names of the fields it overrides, for the rule document."""
        return tuple(name for name in ("service", "origin", "access") if getattr(self, name) is not None)


class Rule(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One hostname (+ optional path) routed to one origin service."""

    hostname: str
    service: str
    path: str | None = None
    zone_name: str | None = None
    origin: OriginOptions = OriginOptions()
    access: AccessSpec | None = None
    # Take over an existing DNS record without our ownership marker (explicit opt-in only).
    adopt: bool = False

    @property
    def key(self) -> str:
        """Identity of the rule: hostname plus path."""
        return self.hostname + (self.path or "")


class RuleError(msgspec.Struct, frozen=True, kw_only=True):
    """A label (or field) that did not parse, and why. Names the label exactly as the user wrote it."""

    label: str
    reason: str


class ContainerInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A labelled container as its agent reports it: identity, state and the rules its labels describe."""

    container_id: str
    name: str
    image: str = ""
    state: str = "running"
    health: str | None = None
    rules: tuple[Rule, ...] = ()
    errors: tuple[RuleError, ...] = ()
    # Per-container override of GRACE_PERIOD_SECONDS (a label), None = the control plane's default.
    grace_period_seconds: int | None = None
