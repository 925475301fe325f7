"""Everything an agent sends in an event batch, checked as hostile input before anything is written.

Pure (no Redis): ``checked(events, quotas)`` returns the events to add — rules normalised, over-long label errors
truncated — or raises ``ApiError`` 422 naming the exact field (``events[3].container.rules[0].hostname``), or
``OverQuota`` naming a size limit, which the route turns into a recorded 413 (``quotas.refuse``).

Rules go through the same checks as an admin's manual rules (``flareport_common.validate``), plus what only an
admin may set: ``adopt`` (taking over DNS records Flareport did not create) is refused in any agent rule.
"""

from __future__ import annotations

import re

import msgspec

from flareport_api.apierror import invalid
from flareport_common import validate
from flareport_common.messages.events import (
    ContainerDie,
    ContainerStart,
    ContainerStop,
    Inventory,
    TunnelState,
    TunnelStatus,
)
from flareport_common.messages.rules import ContainerInfo, Rule, RuleError
from flareport_common.protocol import AgentEvent
from flareport_common.settings import AgentQuotas

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
MAX_NAME = 512  # container names (Docker sets no limit; real ones are far shorter)
MAX_IMAGE = 1024  # registry host, repository path, tag and digest
MAX_STATE = 32
MAX_GRACE_SECONDS = 366 * 86400
MAX_EXIT_CODE = 2**32
MAX_RESTARTS = 2**31


class OverQuota(Exception):
    """A size limit of ``AgentQuotas`` was exceeded: ``limit`` is its name (as ``quotas.refuse`` records it)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message


def checked(events: tuple[AgentEvent, ...], quotas: AgentQuotas) -> tuple[AgentEvent, ...]:
    """The batch as it may be added: every event checked, rules normalised, label errors bounded."""
    out: list[AgentEvent] = []
    hostnames: set[str] = set()
    for index, event in enumerate(events):
        field = f"events[{index}]"
        _envelope(event, field)
        if isinstance(event, ContainerStart):
            container = _container(event.container, f"{field}.container", quotas)
            hostnames.update(r.hostname for r in container.rules)
            event = msgspec.structs.replace(event, container=container)
        elif isinstance(event, Inventory):
            event = msgspec.structs.replace(event, containers=_inventory(event, field, quotas))
            hostnames.update(r.hostname for c in event.containers for r in c.rules)
        elif isinstance(event, ContainerStop | ContainerDie):
            _stopped(event, field)
        else:
            _tunnel(event, field)
        if len(hostnames) > quotas.hostnames:
            raise OverQuota("hostnames", f"{field}: more than {quotas.hostnames} distinct hostnames in one batch")
        out.append(event)
    return tuple(out)


def _envelope(event: AgentEvent, field: str) -> None:
    # The message id and correlation id travel into the shared streams and logs: bounded, plain tokens.
    if not _MESSAGE_ID.match(event.id):
        raise invalid(f"{field}.id", "id must be 1-64 letters, digits, '_' or '-'")
    if event.correlation_id and not _MESSAGE_ID.match(event.correlation_id):
        raise invalid(f"{field}.correlation_id", "correlation_id must be 1-64 letters, digits, '_' or '-'")
    if not 0 <= event.schema_version <= 1000:
        raise invalid(f"{field}.schema_version", "schema_version must be between 0 and 1000")


def _inventory(event: Inventory, field: str, quotas: AgentQuotas) -> tuple[ContainerInfo, ...]:
    if len(event.containers) > quotas.containers:
        raise OverQuota("containers", f"{field}: more than {quotas.containers} containers in one inventory")
    containers = tuple(_container(c, f"{field}.containers[{i}]", quotas) for i, c in enumerate(event.containers))
    distinct = {r.hostname for c in containers for r in c.rules}
    if len(distinct) > quotas.hostnames:
        raise OverQuota("hostnames", f"{field}: more than {quotas.hostnames} distinct hostnames in one inventory")
    return containers


def printable(value: str, field: str, maximum: int, *, empty: bool = True) -> None:
    """At most ``maximum`` characters, none of them a control character (no newline, NUL or escape)."""
    if len(value) > maximum or not value.isprintable() or (not empty and not value):
        raise invalid(field, f"must be {0 if empty else 1}-{maximum} printable characters")


_text = printable


def _container_id(value: str, field: str) -> None:
    if not _CONTAINER_ID.match(value):
        raise invalid(field, "container id must be 1-128 letters, digits, '_', '.', '-'")


def _container(info: ContainerInfo, field: str, quotas: AgentQuotas) -> ContainerInfo:
    _container_id(info.container_id, f"{field}.container_id")
    _text(info.name, f"{field}.name", MAX_NAME)
    _text(info.image, f"{field}.image", MAX_IMAGE)
    _text(info.state, f"{field}.state", MAX_STATE, empty=False)
    if info.health is not None:
        _text(info.health, f"{field}.health", MAX_STATE)
    grace = info.grace_period_seconds
    if grace is not None and not 0 <= grace <= MAX_GRACE_SECONDS:
        raise invalid(f"{field}.grace_period_seconds", f"must be between 0 and {MAX_GRACE_SECONDS}")
    if len(info.rules) > quotas.rules_per_container:
        raise OverQuota(
            "rules_per_container", f"{field}.rules: more than {quotas.rules_per_container} rules in one container"
        )
    if len(info.errors) > quotas.label_errors_per_container:
        raise OverQuota("label_errors", f"{field}.errors: more than {quotas.label_errors_per_container} label errors")
    rules = tuple(_rule(r, f"{field}.rules[{i}]") for i, r in enumerate(info.rules))
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.key in seen:
            raise invalid(f"{field}.rules[{index}].hostname", f"duplicate rule {rule.key!r} in one container")
        seen.add(rule.key)
    errors = tuple(_label_error(e, quotas.label_error_bytes) for e in info.errors)
    if rules == info.rules and errors == info.errors:
        return info
    return msgspec.structs.replace(info, rules=rules, errors=errors)


def _rule(rule: Rule, field: str) -> Rule:
    if rule.adopt:
        # Adopting deletes DNS records Flareport did not create: another host's, or the zone apex.
        raise invalid(f"{field}.adopt", "only an admin may adopt records (a manual rule); an agent rule may not")
    try:
        return validate.rule(rule, field)
    except validate.FieldError as exc:
        raise invalid(exc.field, exc.reason) from None


def _label_error(error: RuleError, limit: int) -> RuleError:
    label, reason = validate.clip_label_error(error.label, error.reason, limit)
    if label == error.label and reason == error.reason:
        return error
    return RuleError(label=label, reason=reason)


def _stopped(event: ContainerStop | ContainerDie, field: str) -> None:
    _container_id(event.container_id, f"{field}.container_id")
    _text(event.name, f"{field}.name", MAX_NAME)
    if isinstance(event, ContainerDie) and event.exit_code is not None and abs(event.exit_code) > MAX_EXIT_CODE:
        raise invalid(f"{field}.exit_code", f"exit_code must be within ±{MAX_EXIT_CODE}")


def _tunnel(event: TunnelStatus, field: str) -> None:
    tunnel_state(event.tunnel, f"{field}.tunnel")


def tunnel_state(tunnel: TunnelState, field: str) -> None:
    """The agent's cloudflared container as it reports it (in a ``tunnel_status`` event or a heartbeat)."""
    _text(tunnel.container_state, f"{field}.container_state", MAX_STATE, empty=False)
    _text(tunnel.image, f"{field}.image", MAX_IMAGE)
    if not 0 <= tunnel.restarts <= MAX_RESTARTS:
        raise invalid(f"{field}.restarts", f"restarts must be between 0 and {MAX_RESTARTS}")
    if tunnel.tunnel_id is not None:
        try:
            validate.ident(tunnel.tunnel_id, f"{field}.tunnel_id", "tunnel id")
        except validate.FieldError as exc:
            raise invalid(exc.field, exc.reason) from None
