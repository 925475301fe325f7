"""Container labels -> typed rules: the pure core of the agent, with no I/O.

Prefixes are tried in order for every label on its own — the custom ``LABEL_PREFIX``, then ``flareport.``,
``dockflare.``, ``cloudflare.tunnel.`` — and the first one present wins, so DockFlare's labels work unchanged and a
``flareport.`` label overrides a ``dockflare.`` one on the same container.

Rules: the base labels describe one rule (when ``hostname`` is set); indexed labels ``N.<label>`` describe more,
N counting from 0 and stopping at the first missing ``N.hostname``; each indexed label falls back to its base label
(``0.service`` missing -> ``service``). A label that does not parse drops only the rule it belongs to and yields a
``RuleError`` naming the label exactly as written; the container's other rules stay. DockFlare silently dropped an
indexed hostname containing a path (its issue #313); here it is an error telling the user to use the path label.

``parse_container`` never raises: every problem becomes a ``RuleError`` (hypothesis checks this).

The agent never sends what the API refuses: every rule finally goes through the API's own checks
(``flareport_common.validate``), and a container keeps at most the control plane's default number of rules and of
label errors, each error cut to its default size (``AgentQuotas``), so one bad label costs its rule, never the
whole event batch.
Per-container label ``<prefix>grace_period`` (whole seconds) overrides the control plane's GRACE_PERIOD_SECONDS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flareport_agent import values
from flareport_common import validate
from flareport_common.messages.rules import AccessPolicy, AccessSpec, ContainerInfo, OriginOptions, Rule, RuleError
from flareport_common.settings import AgentQuotas

BUILTIN_PREFIXES = ("flareport.", "dockflare.", "cloudflare.tunnel.")
MAX_INDEXED_RULES = 100
# The control plane's default quotas (FLAREPORT_AGENT_MAX_*): what goes beyond becomes a label error here rather
# than a refused event batch there.
MAX_RULES = AgentQuotas().rules_per_container
MAX_ERRORS = AgentQuotas().label_errors_per_container
MAX_ERROR_BYTES = AgentQuotas().label_error_bytes
# The label behind each field of a rule, for the API's checks to name the label the user wrote.
_FIELD_LABELS = {
    "service": "service",
    "path": "path",
    "zone_name": "zonename",
    "origin.origin_server_name": "originsrvname",
    "origin.http_host_header": "httpHostHeader",
    "access.name": "access.name",
    "access.session_duration": "access.session_duration",
    "access.groups": "access.groups",
    "access.allowed_idps": "access.allowed_idps",
    "access.custom_rules": "access.custom_rules",
}
_POLICIES: dict[str, AccessPolicy] = {
    "bypass": "bypass",
    "authenticate": "authenticate",
    "default_tld": "default_tld",
    "custom": "custom",
}
T = TypeVar("T")


class _Invalid(Exception):
    """One label failed; carries the error that the rule being built will report."""

    def __init__(self, error: RuleError) -> None:
        super().__init__(error.reason)
        self.error = error


def prefixes(custom: str | None) -> tuple[str, ...]:
    """The lookup order; a custom prefix gets its trailing dot added when missing."""
    if not custom:
        return BUILTIN_PREFIXES
    custom = custom if custom.endswith(".") else custom + "."
    return (custom, *(p for p in BUILTIN_PREFIXES if p != custom))


class LabelView:
    """Looks labels up by short name across the prefixes, remembering the full name that matched."""

    def __init__(self, labels: Mapping[str, str], label_prefix: str | None = None) -> None:
        self.labels = labels
        self.order = prefixes(label_prefix)

    def find(self, name: str) -> tuple[str, str] | None:
        for prefix in self.order:
            full = prefix + name
            if full in self.labels:
                return full, self.labels[full]
        return None


def _convert(found: tuple[str, str] | None, convert: Callable[[str], T]) -> T | None:
    if found is None:
        return None
    label, raw = found
    try:
        return convert(raw)
    except ValueError as exc:
        raise _Invalid(RuleError(label=label, reason=str(exc))) from None


class _RuleLabels:
    """The labels of one rule: ``N.<name>`` first (when indexed), then the base ``<name>``."""

    def __init__(self, view: LabelView, index: int | None) -> None:
        self.view = view
        self.index = index

    def find(self, name: str) -> tuple[str, str] | None:
        if self.index is not None:
            found = self.view.find(f"{self.index}.{name}")
            if found is not None:
                return found
        return self.view.find(name)

    def get(self, name: str, convert: Callable[[str], T]) -> T | None:
        return _convert(self.find(name), convert)

    def text(self, name: str) -> str | None:
        found = self.find(name)
        return found[1].strip() or None if found else None


def _custom_rules(raw: str) -> tuple[dict[str, Any], ...]:
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"is not valid JSON: {exc}") from None
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list) or not all(isinstance(item, dict) and item for item in decoded):
        raise ValueError(
            'must be a JSON list of Access policies, e.g. [{"decision": "allow", "include": [{"email": '
            '{"email": "me@example.com"}}]}]'
        )
    return tuple(decoded)


def _policy_of(found: tuple[str, str] | None) -> AccessPolicy | None:
    if found is None or not found[1].strip():
        return None  # DockFlare: an empty policy is no policy
    return _convert(found, _policy)


def _policy(raw: str) -> AccessPolicy:
    policy = _POLICIES.get(raw.strip().lower())
    if policy is None:
        # DockFlare makes an app without policies (nobody gets in) of a value it does not know; say so instead.
        raise ValueError(f"expected bypass, authenticate, default_tld or custom, got {raw!r}")
    return policy


ACCESS_LABELS = (
    "access.policy",
    "access.group",
    "access.groups",
    "access.name",
    "access.session_duration",
    "access.app_launcher_visible",
    "access.allowed_idps",
    "access.auto_redirect_to_identity",
    "access.custom_rules",
)


def _at(view: LabelView, index: int | None, name: str) -> tuple[str, str] | None:
    """A label at one level only, without falling back: ``N.<name>`` for an index, ``<name>`` for the base."""
    return view.find(name if index is None else f"{index}.{name}")


def _groups(view: LabelView, index: int | None) -> tuple[str, ...] | None:
    """``access.groups`` (else ``access.group``, also split on commas) at one level: the group labels are one unit,
    so a base ``access.groups`` never hides an index's ``N.access.group``. None when no group label is there."""
    for name in ("access.groups", "access.group"):
        found = _at(view, index, name)
        if found is not None:
            return _convert(found, values.parse_list)
    return None


def _access(rl: _RuleLabels) -> AccessSpec | None:
    """DockFlare's Access labels of one rule (flareport_common.access resolves what they mean).

    An indexed rule that sets no ``N.access.*`` label inherits the base rule's Access as a whole. One that sets
    any resolves its own: its group labels, else its own policy (which displaces inherited groups), else the base's
    groups and policy; each settings label falls back to the base on its own."""
    view, index = rl.view, rl.index
    if index is not None and not any(_at(view, index, name) for name in ACCESS_LABELS):
        return _access(_RuleLabels(view, None))
    own_groups = _groups(view, index)
    own_policy = _at(view, index, "access.policy")
    if own_groups is not None or own_policy is not None or index is None:
        groups = own_groups or ()
        policy = _policy_of(own_policy)
    else:
        groups = _groups(view, None) or ()
        policy = _policy_of(_at(view, None, "access.policy"))
    spec = AccessSpec(
        policy=policy,
        groups=groups,
        name=rl.text("access.name"),
        session_duration=rl.get("access.session_duration", values.parse_duration),
        app_launcher_visible=rl.get("access.app_launcher_visible", values.parse_bool),
        allowed_idps=rl.get("access.allowed_idps", values.parse_list) or (),
        auto_redirect_to_identity=rl.get("access.auto_redirect_to_identity", values.parse_bool),
        custom_rules=rl.get("access.custom_rules", _custom_rules) or (),
    )
    return None if spec == AccessSpec() else spec


def _path(raw: str) -> str:
    path = raw.strip()
    if not path:
        raise ValueError("is empty")
    if not path.startswith(("/", "^")):
        path = "/" + path  # DockFlare adds the leading slash
    if any(c.isspace() for c in path) or len(path) > 1024:
        raise ValueError(f"must contain no spaces and be at most 1024 characters, got {raw!r}")
    return path


def _zone_for(hostname: str, zone: str | None, found: tuple[str, str] | None) -> str | None:
    if zone is None:
        return None
    bare = hostname.removeprefix("*.")
    if bare != zone and not bare.endswith("." + zone):
        label = found[0] if found else "zonename"
        raise _Invalid(RuleError(label=label, reason=f"hostname {hostname!r} is not in zone {zone!r}"))
    return zone


def _rule(view: LabelView, index: int | None) -> Rule:
    rl = _RuleLabels(view, index)
    host_found = view.find(f"{index}.hostname") if index is not None else view.find("hostname")
    hostname = _convert(host_found, values.parse_hostname)
    assert hostname is not None and host_found is not None  # callers only build rules that have a hostname
    service = rl.get("service", values.parse_service)
    if service is None:
        label = host_found[0].removesuffix("hostname") + "service"
        raise _Invalid(RuleError(label=label, reason=f"required: no service for hostname {hostname!r}"))
    zone_found = rl.find("zonename")
    zone = _zone_for(hostname, _convert(zone_found, lambda z: values.parse_hostname(z, wildcard=False)), zone_found)
    origin = OriginOptions(
        no_tls_verify=rl.get("no_tls_verify", values.parse_bool),
        origin_server_name=rl.text("originsrvname"),
        http_host_header=rl.text("httpHostHeader"),
        http2_origin=rl.get("http2_origin", values.parse_bool),
        disable_chunked_encoding=rl.get("disable_chunked_encoding", values.parse_bool),
        match_sni_to_host=rl.get("match_sni_to_host", values.parse_bool),
    )
    rule = Rule(
        hostname=hostname,
        service=service,
        path=rl.get("path", _path),
        zone_name=zone,
        origin=origin,
        access=_access(rl),
    )
    try:
        return validate.rule(rule)
    except validate.FieldError as exc:
        raise _Invalid(RuleError(label=_label_of(rl, exc.field, host_found[0]), reason=exc.reason)) from None


def _label_of(rl: _RuleLabels, field: str, hostname_label: str) -> str:
    """The label as written behind a rule field (``rule.access.groups[2]`` -> ``dockflare.access.groups``)."""
    name = field.removeprefix("rule.").split("[", 1)[0]
    short = _FIELD_LABELS.get(name)
    if short == "access.groups" and rl.find(short) is None:
        short = "access.group"
    found = rl.find(short) if short is not None else None
    return found[0] if found is not None else hostname_label


def parse_rules(view: LabelView) -> tuple[list[Rule], list[RuleError]]:
    rules: list[Rule] = []
    errors: list[RuleError] = []
    indexes: list[int | None] = [None] if view.find("hostname") else []
    for n in range(MAX_INDEXED_RULES):
        if view.find(f"{n}.hostname") is None:
            break
        indexes.append(n)
    seen: dict[str, str] = {}
    for index in indexes:
        try:
            rule = _rule(view, index)
        except _Invalid as exc:
            errors.append(exc.error)
            continue
        label = (view.find(f"{index}.hostname") if index is not None else view.find("hostname")) or ("", "")
        if rule.key in seen:
            errors.append(RuleError(label=label[0], reason=f"duplicate of {seen[rule.key]} ({rule.key})"))
            continue
        if len(rules) >= MAX_RULES:
            errors.append(RuleError(label=label[0], reason=f"more than {MAX_RULES} rules in one container"))
            continue
        seen[rule.key] = label[0]
        rules.append(rule)
    return rules, errors


def _bounded(errors: list[RuleError], summary_label: str) -> tuple[RuleError, ...]:
    """At most ``MAX_ERRORS`` errors of at most ``MAX_ERROR_BYTES`` each; the last one says how many were left out."""
    if len(errors) > MAX_ERRORS:
        left_out = len(errors) - (MAX_ERRORS - 1)
        errors = [*errors[: MAX_ERRORS - 1], RuleError(label=summary_label, reason=f"and {left_out} more label errors")]
    clipped = (validate.clip_label_error(e.label, e.reason, MAX_ERROR_BYTES) for e in errors)
    return tuple(RuleError(label=label, reason=reason) for label, reason in clipped)


def parse_container(
    labels: Mapping[str, str],
    *,
    container_id: str,
    name: str,
    image: str = "",
    state: str = "running",
    health: str | None = None,
    label_prefix: str | None = None,
) -> ContainerInfo | None:
    """The container as the agent reports it, or None when it does not ask to be published (no true ``enable``)."""
    view = LabelView(labels, label_prefix)
    enable = view.find("enable")
    if enable is None:
        return None
    errors: list[RuleError] = []
    try:
        if not values.parse_bool(enable[1]):
            return None
    except ValueError as exc:
        # A typo in ``enable`` is reported rather than silently ignored: the user meant something.
        errors.append(RuleError(label=enable[0], reason=str(exc)))
        return ContainerInfo(
            container_id=container_id,
            name=name,
            image=image,
            state=state,
            health=health,
            errors=_bounded(errors, enable[0]),
        )
    rules, rule_errors = parse_rules(view)
    errors.extend(rule_errors)
    grace: int | None = None
    try:
        grace = _convert(view.find("grace_period"), values.parse_seconds)
    except _Invalid as exc:
        errors.append(exc.error)
    return ContainerInfo(
        container_id=container_id,
        name=name,
        image=image,
        state=state,
        health=health,
        rules=tuple(rules),
        errors=_bounded(errors, enable[0]),
        grace_period_seconds=grace,
    )
