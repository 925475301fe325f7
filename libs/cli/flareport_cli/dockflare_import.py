"""Read a DockFlare ``state.json`` (or a DockFlare backup ``.zip`` holding one) into a typed import plan.

Pure: ``parse(data, source)`` reads only the bytes it is given and returns a ``Plan``; it never touches the
network or the file system. ``flareport import dockflare`` (flareport_cli.admin.importer) compares the plan with
what the API holds and, with ``--apply``, creates what is missing.

DockFlare's state file (v3.1.2) is one JSON object:

* ``access_groups``: ``{group_id: {display_name, session_duration, app_launcher_visible,
  auto_redirect_to_identity, public_mode, policies: [{name, decision, include, exclude, require}], ...}}``.
  ``public-default-bypass`` and ``authenticated-default`` are its built-in groups: Flareport has the same two
  built in, so they map to those and are not written. A Flareport group holds one policy; DockFlare synced only a
  group's first policy to Cloudflare too, so the first is imported and the others are reported by name.
* ``managed_rules``: ``{"hostname|path": {hostname, path, service, source, tunnel_id, origin options,
  access_policy_type, access_group_id, ...}}``. ``source: "manual"`` rules become Flareport manual rules; docker
  rules come back from the containers' labels once the host runs a Flareport agent, so they are listed only.
* ``agents``: ``{agent_id: {display_name, status, assigned_tunnel_name, assigned_tunnel_id, ...}}``: listed with
  what each host must do. Their keys and tunnel tokens are secrets and never copied into the plan.
* ``identity_providers``, ``agent_cf_token``: not imported (noted).

A backup ``.zip`` holds ``manifest.json`` and the data files; the state is the member ``state.json``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from flareport_common import validate
from flareport_common.messages.rules import AccessSpec, OriginOptions, Rule

STATE_MEMBER = "state.json"
# Flareport's built-in groups, which are DockFlare's system groups under the same ids; "bypass" is DockFlare's
# legacy id for the public one.
SYSTEM_GROUPS = {"public-default-bypass": "public-default-bypass", "authenticated-default": "authenticated-default"}
LEGACY_BYPASS = "bypass"
GROUP_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
DECISIONS = ("allow", "deny", "bypass", "non_identity")
POLICY_TYPES = ("bypass", "authenticate", "default_tld")
MAX_INPUT_BYTES = 64 * 1024 * 1024

TOP_KEYS = frozenset({"managed_rules", "access_groups", "agents", "identity_providers", "agent_cf_token"})
# Keys DockFlare keeps for its own bookkeeping: understood, nothing to import.
GROUP_BOOKKEEPING = frozenset(
    {"id", "cloudflare_policy_id", "cf_policy_id", "system_policy", "deletable", "external_policy", "hide_from_ui"}
)
GROUP_KEYS = GROUP_BOOKKEEPING | {
    "display_name",
    "session_duration",
    "app_launcher_visible",
    "auto_redirect_to_identity",
    "public_mode",
    "policies",
    "allowed_idps",
}
ORIGIN_KEYS = tuple(OriginOptions.__struct_fields__)
RULE_BOOKKEEPING = frozenset(
    {
        "container_id",
        "status",
        "zone_id",
        "access_app_id",
        "access_app_config_hash",
        "access_policy_ui_override",
        "rule_ui_override",
        "delete_at",
        "tunnel_name",
        "agent_id",
    }
)
RULE_KEYS = (
    RULE_BOOKKEEPING
    | set(ORIGIN_KEYS)
    | {
        "hostname",
        "path",
        "service",
        "source",
        "zone_name",
        "tunnel_id",
        "access_policy_type",
        "access_group_id",
    }
)
POLICY_KEYS = frozenset({"name", "decision", "include", "exclude", "require", "id", "precedence"})


class ImportFormatError(Exception):
    """The file cannot be imported: ``message`` names the file, the member and the key that is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class GroupPlan:
    """An access group to create under its DockFlare id (``system``: a built-in group, never written)."""

    group_id: str
    name: str
    body: dict[str, Any]  # the AccessGroupCreateRequest, group_id included; empty for a system group
    system: bool = False
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RulePlan:
    """A manual rule to create (``body`` is the ManualRuleRequest)."""

    key: str  # DockFlare's key in managed_rules
    hostname: str
    path: str | None
    body: dict[str, Any]
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class InfoItem:
    """A DockFlare object Flareport gets back another way: what the operator must do for it."""

    kind: Literal["docker_rule", "agent"]
    name: str
    todo: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    source: str  # the file (and member) read
    groups: tuple[GroupPlan, ...]
    rules: tuple[RulePlan, ...]
    info: tuple[InfoItem, ...]
    warnings: tuple[str, ...]
    # DockFlare's tunnels (ids or names) the rules and agents used: where its DNS records point.
    tunnels: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(e for g in self.groups for e in g.errors) + tuple(e for r in self.rules for e in r.errors)


def read_state(data: bytes, source: str) -> tuple[dict[str, Any], str]:
    """The decoded state object and the name it was read under (``backup.zip:state.json`` for an archive)."""
    if len(data) > MAX_INPUT_BYTES:
        raise ImportFormatError(f"{source}: larger than {MAX_INPUT_BYTES} bytes; not a DockFlare state file")
    name = source
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = archive.namelist()
                chosen = [m for m in members if m == STATE_MEMBER] or [
                    m for m in members if m.rsplit("/", 1)[-1] == STATE_MEMBER
                ]
                if len(chosen) != 1:
                    found = ", ".join(members[:20]) or "nothing"
                    problem = "no" if not chosen else "more than one"
                    raise ImportFormatError(
                        f"{source}: {problem} member {STATE_MEMBER!r} in this archive (it holds: {found}); "
                        "a DockFlare backup keeps its state in state.json"
                    )
                name = f"{source}:{chosen[0]}"
                if archive.getinfo(chosen[0]).file_size > MAX_INPUT_BYTES:
                    raise ImportFormatError(f"{name}: larger than {MAX_INPUT_BYTES} bytes")
                data = archive.read(chosen[0])
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise ImportFormatError(f"{source}: not a readable zip archive: {exc}") from None
    try:
        loaded = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise ImportFormatError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise ImportFormatError(f"{name}: expected a JSON object with managed_rules, access_groups, agents")
    if not TOP_KEYS & loaded.keys():
        raise ImportFormatError(
            f"{name}: none of the keys of a DockFlare state file ({', '.join(sorted(TOP_KEYS))}) is present"
        )
    return loaded, name


def _section(state: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = state.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportFormatError(f"{name}: key {key!r} must be an object (id -> entry), not {type(value).__name__}")
    for item_id, item in value.items():
        if not isinstance(item, dict):
            raise ImportFormatError(f"{name}: {key}.{item_id} must be an object, not {type(item).__name__}")
    return value


def _unknown(entry: dict[str, Any], known: frozenset[str] | set[str], where: str) -> list[str]:
    return [f"{where}.{k}: not understood, not imported" for k in sorted(entry) if k not in known]


def _group(group_id: str, entry: dict[str, Any], warnings: list[str]) -> GroupPlan | None:
    where = f"access_groups.{group_id}"
    warnings += _unknown(entry, GROUP_KEYS, where)
    name = entry.get("display_name") or group_id
    if group_id in SYSTEM_GROUPS or group_id == LEGACY_BYPASS:
        target = SYSTEM_GROUPS.get(group_id, "public-default-bypass")
        note = f"DockFlare's system group: Flareport's built-in {target} takes its place (not written)"
        return GroupPlan(group_id=target, name=str(name), body={}, system=True, notes=(note,))
    if entry.get("system_policy"):
        warnings.append(f"{where}: a system policy Flareport has no built-in group for; not imported")
        return None
    notes: list[str] = []
    errors: list[str] = []
    if not GROUP_ID.match(group_id):
        errors.append(f"{where}: the id is not a Flareport group id (1-64 lowercase letters, digits, '-', '_', '.')")
    if entry.get("external_policy"):
        notes.append("was a Cloudflare policy DockFlare did not manage; Flareport will manage its copy")
    policies = entry.get("policies")
    if not isinstance(policies, list) or not policies or not all(isinstance(p, dict) for p in policies):
        errors.append(f"{where}.policies: expected a non-empty list of policies")
        return GroupPlan(group_id=group_id, name=str(name), body={}, notes=tuple(notes), errors=tuple(errors))
    first = policies[0]
    warnings += _unknown(first, POLICY_KEYS, f"{where}.policies[0]")
    for index, other in enumerate(policies[1:], start=1):
        label = other.get("name") or f"#{index}"
        notes.append(
            f"policy {label!r} ({other.get('decision')}) not imported: a Flareport group holds one policy "
            "(DockFlare synced only the first one to Cloudflare as well)"
        )
    decision = first.get("decision")
    decision = "deny" if decision == "block" else decision
    body: dict[str, Any] = {"group_id": group_id, "name": str(name), "decision": decision}
    for part in ("include", "exclude", "require"):
        value = first.get(part)
        if value or part == "include":
            body[part] = value if value is not None else []
    session = entry.get("session_duration")
    if session is not None:
        body["session_duration"] = session
    for setting in ("app_launcher_visible", "auto_redirect_to_identity", "allowed_idps", "public_mode"):
        if entry.get(setting):
            notes.append(f"{setting}={entry[setting]!r} not imported: Flareport sets it per rule (access.* labels)")
    try:
        validate.text(str(name), f"{where}.display_name", maximum=100)
        if decision not in DECISIONS:
            raise validate.FieldError(f"{where}.policies[0].decision", f"must be one of {', '.join(DECISIONS)}")
        policy: dict[str, Any] = {k: body[k] for k in ("decision", "include", "exclude", "require") if k in body}
        validate.custom_rules((policy,), f"{where}.policies")
        if session is not None:
            validate.duration(str(session), f"{where}.session_duration")
    except validate.FieldError as exc:
        errors.append(str(exc))
    return GroupPlan(group_id=group_id, name=str(name), body=body, notes=tuple(notes), errors=tuple(errors))


def _access(entry: dict[str, Any], where: str, warnings: list[str]) -> AccessSpec | None:
    groups = entry.get("access_group_id")
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    if groups:
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise validate.FieldError(f"{where}.access_group_id", "expected a group id or a list of them")
        return AccessSpec(groups=tuple("public-default-bypass" if g == LEGACY_BYPASS else g for g in groups))
    kind = entry.get("access_policy_type")
    if kind in POLICY_TYPES:
        return AccessSpec(policy=kind)
    if kind not in (None, "", "none", "inline", "reusable", "group"):
        warnings.append(f"{where}.access_policy_type: {kind!r} not understood, no Access settings imported")
    return None


def _rule(key: str, entry: dict[str, Any], warnings: list[str]) -> RulePlan:
    where = f"managed_rules.{key}"
    warnings += _unknown(entry, RULE_KEYS, where)
    hostname = entry.get("hostname") or key.split("|", 1)[0]
    path = entry.get("path") or None
    notes: list[str] = []
    errors: list[str] = []
    origin = {}
    for option in ORIGIN_KEYS:
        value = entry.get(option)
        # DockFlare stores False for "not set": cloudflared's default, so it stays unset here.
        if value not in (None, False, ""):
            origin[option] = value
    body: dict[str, Any] = {}
    access: AccessSpec | None = None
    try:
        access = _access(entry, where, warnings)
        rule = msgspec.convert(
            {"hostname": hostname, "path": path, "service": entry.get("service"), "zone_name": entry.get("zone_name")},
            Rule,
        )
        rule = msgspec.structs.replace(
            rule, origin=msgspec.convert(origin, OriginOptions), access=access if access else None
        )
        rule = validate.rule(rule, f"{where}")
        body = {"rule": msgspec.to_builtins(rule)}
        tunnel = entry.get("tunnel_id")
        if tunnel:
            body["tunnel_id"] = validate.ident(str(tunnel), f"{where}.tunnel_id", "tunnel id")
        elif entry.get("agent_id"):
            notes.append(f"was pinned to DockFlare agent {entry['agent_id']!r}; give it a tunnel after enrolling")
    except msgspec.ValidationError as exc:
        errors.append(f"{where}: {exc}")
    except validate.FieldError as exc:
        errors.append(str(exc))
    if entry.get("tunnel_name"):
        notes.append(f"DockFlare tunnel {entry['tunnel_name']!r}")
    if body.get("tunnel_id"):
        notes.append(
            "its DNS record, a proxied CNAME to that tunnel without a comment as DockFlare leaves it, is adopted in "
            "place at the first sync (anything else on the name stays a conflict)"
        )
    if access is not None:
        notes.append(
            "its Access app made by DockFlare is adopted in place when the dns-worker runs with "
            "FLAREPORT_ADOPT_DOCKFLARE_ACCESS=true; otherwise it is a conflict"
        )
    return RulePlan(key=key, hostname=str(hostname), path=path, body=body, notes=tuple(notes), errors=tuple(errors))


def _docker_rule(key: str, entry: dict[str, Any]) -> InfoItem:
    host = str(entry.get("hostname") or key.split("|", 1)[0]) + str(entry.get("path") or "")
    owner = entry.get("agent_id") or entry.get("tunnel_name") or "the DockFlare host"
    todo = (
        f"comes back from its container's labels: the host of container {entry.get('container_id') or '?'} "
        f"({owner}) runs the Flareport agent with the same labels"
    )
    details = {k: entry.get(k) for k in ("service", "container_id", "agent_id", "tunnel_id", "tunnel_name")}
    return InfoItem(kind="docker_rule", name=host, todo=todo, details={k: v for k, v in details.items() if v})


def _agent(agent_id: str, entry: dict[str, Any]) -> InfoItem:
    name = entry.get("display_name") or agent_id
    tunnel = entry.get("assigned_tunnel_name") or entry.get("assigned_tunnel_id")
    todo = (
        f"on host {name!r}: stop the DockFlare agent, create a Flareport agent key, run the Flareport agent "
        f"with it{f' on tunnel {tunnel}' if tunnel else ''}; containers keep their labels"
    )
    details = {"agent_id": agent_id, "status": entry.get("status"), "tunnel": tunnel}
    return InfoItem(kind="agent", name=str(name), todo=todo, details={k: v for k, v in details.items() if v})


def parse(data: bytes, source: str) -> Plan:
    """The plan for one DockFlare file; ``ImportFormatError`` when it is not one (nothing is half-read)."""
    state, name = read_state(data, source)
    warnings: list[str] = []
    for key in sorted(state):
        if key not in TOP_KEYS:
            warnings.append(f"{key}: not understood, not imported")
    groups_in = _section(state, "access_groups", name)
    rules_in = _section(state, "managed_rules", name)
    agents_in = _section(state, "agents", name)
    if state.get("identity_providers"):
        warnings.append("identity_providers: not imported (Flareport refers to Cloudflare's identity providers)")
    if state.get("agent_cf_token"):
        warnings.append("agent_cf_token: not imported (a secret; the Flareport dns-worker has its own token)")
    groups = [g for gid, entry in groups_in.items() if (g := _group(str(gid), entry, warnings)) is not None]
    rules: list[RulePlan] = []
    info: list[InfoItem] = []
    for key, entry in rules_in.items():
        source_kind = entry.get("source", "docker")
        if entry.get("status") == "pending_deletion" or entry.get("delete_at"):
            warnings.append(f"managed_rules.{key}: scheduled for deletion in DockFlare; not imported")
        elif source_kind == "manual":
            rules.append(_rule(str(key), entry, warnings))
        elif source_kind == "docker":
            info.append(_docker_rule(str(key), entry))
        else:
            warnings.append(f"managed_rules.{key}.source: {source_kind!r} not understood, not imported")
    info += [_agent(str(aid), entry) for aid, entry in agents_in.items()]
    tunnels: set[str] = set()
    for entry in [*rules_in.values(), *agents_in.values()]:
        if isinstance(entry, dict):
            found = entry.get("tunnel_id") or entry.get("assigned_tunnel_id") or entry.get("tunnel_name")
            if found or entry.get("assigned_tunnel_name"):
                tunnels.add(str(found or entry.get("assigned_tunnel_name")))
    return Plan(
        source=name,
        groups=tuple(groups),
        rules=tuple(rules),
        info=tuple(info),
        warnings=tuple(warnings),
        tunnels=tuple(sorted(tunnels)),
    )
