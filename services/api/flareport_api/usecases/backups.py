"""Backups of the admin's state, and restoring them: what ``GET /api/v1/backup``, ``POST /api/v1/restore``,
``flareport backup`` / ``restore`` and the web UI's backup page do.

A backup holds the manual rules, the admin's access groups and each agent's record as the admin shaped it, and
never a secret (``backupschemas``). A restore is a dry run unless asked to apply, and works in three steps:

1. ``check``: every object of the document is checked with the same checks as the admin routes, and duplicates
   within it are refused; the first refusal is a 4xx naming the field (``manual_rules[2].rule.hostname``) and
   nothing is written.
2. ``compare``: each object against what this deployment holds (``flareport_common.declarations``, shared with
   ``flareport import dockflare``): ``create``, ``unchanged``, or ``conflict`` (present and different: never
   overwritten). An agent that is not registered here is ``missing``: it needs a new key first.
3. apply: the ``create`` objects go through the same use cases as the admin routes (groups first, so rules can
   name them; an agent is enrolled with the tunnel it had, adopted, and its policy). Running it again reports
   everything ``unchanged`` (an agent's enrolment once the reconciler recorded it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import msgspec

from flareport_api import validation
from flareport_api.apierror import ApiError, invalid
from flareport_api.backupschemas import (
    FORMAT,
    FORMAT_VERSION,
    Backup,
    BackupAccessGroup,
    BackupAgent,
    BackupManualRule,
    RestoreItem,
    RestoreReport,
)
from flareport_api.schemas import AccessGroupRequest, EnrollRequest, ManualRuleRequest, RuleInput
from flareport_api.state import ApiContext
from flareport_api.usecases import accessgroups, agents, manualrules
from flareport_common import declarations
from flareport_common.messages.base import utcnow
from flareport_common.readmodel import AgentRecord

T = TypeVar("T")
RULE_FIELDS = ("rule", "agent_id", "tunnel_id")
# What an agent's record holds that the admin decided (the rest is the agent's own report or the reconciler's).
AGENT_FIELDS = (
    "display_name",
    "tunnel_id",
    "allowed_zones",
    "allowed_suffixes",
    "allow_wildcard",
    "allow_apex",
    "origin_allow",
)
REDO = (
    "Agent keys are never in a backup (only their hashes were ever stored): create a new key for each host "
    "(flareport keys create), start its agent with it, then enrol the new agent with the tunnel_id and policy "
    "listed under agents (a restore enrols agents that are registered under the same id itself).",
    "Tunnel tokens are never in a backup: the tunnels stay in Cloudflare, and enrolling an agent with its "
    "tunnel_id has the control plane fetch that tunnel's token again.",
    "The master API key, the admin password and every other setting are environment variables, not admin state: "
    "keep them with the deployment's configuration.",
    "Rules published from container labels are not listed: they come back from the labels once each host's agent "
    "runs again.",
)


# ---- backup --------------------------------------------------------------------------------------------------


def _agent(record: AgentRecord) -> BackupAgent:
    return BackupAgent(
        agent_id=record.agent_id,
        display_name=record.display_name,
        hostname=record.hostname,
        tunnel_id=record.tunnel_id,
        tunnel_name=record.tunnel_name,
        allowed_zones=record.allowed_zones,
        allowed_suffixes=record.allowed_suffixes,
        allow_wildcard=record.allow_wildcard,
        allow_apex=record.allow_apex,
        origin_allow=record.origin_allow,
    )


async def backup(ctx: ApiContext) -> Backup:
    """The admin's state of this deployment, without any secret."""
    rules = sorted((await manualrules.stored(ctx)).values(), key=lambda r: r.rule.key)
    groups = [g for g in await accessgroups.every(ctx) if not g.system]
    known = sorted((await agents.known(ctx)).values(), key=lambda a: a.agent_id)
    return Backup(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        created_at=utcnow(),
        source_prefix=ctx.keys.prefix,
        manual_rules=tuple(
            BackupManualRule(
                rule_id=r.rule_id,
                rule=msgspec.convert(msgspec.to_builtins(r.rule), RuleInput),
                agent_id=r.agent_id,
                tunnel_id=r.tunnel_id,
            )
            for r in rules
        ),
        access_groups=tuple(
            BackupAccessGroup(group_id=g.group_id, **{f: getattr(g, f) for f in AccessGroupRequest.__struct_fields__})
            for g in groups
        ),
        agents=tuple(_agent(a) for a in known if a.status != "removed"),
        redo=REDO,
    )


# ---- restore: check ------------------------------------------------------------------------------------------


def _at(where: str, check: Callable[[], T]) -> T:
    """Run ``check`` and name the document's place in its refusal (a field relative to it gets ``where.`` ahead)."""
    try:
        return check()
    except ApiError as exc:
        field = where if exc.field in (None, "$") else f"{where}.{exc.field}"
        raise ApiError(exc.status, exc.code, exc.message, field=field) from None


def _unique(values: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise invalid(f"{field}[{index}]", f"{what} {value!r} appears twice in the document")
        seen.add(value)


def _check_agent(agent: BackupAgent) -> None:
    validation.path_id(agent.agent_id, "agent_id")
    validation.text(agent.display_name, "display_name")
    if agent.tunnel_id is not None:
        validation.path_id(agent.tunnel_id, "tunnel_id")
    if agent.tunnel_name is not None:
        validation.text(agent.tunnel_name, "tunnel_name", maximum=100)
    agents.allow_list(agent.allowed_zones, "allowed_zones")
    agents.allow_list(agent.allowed_suffixes, "allowed_suffixes", suffix=True)
    agents.origin_kinds(agent.origin_allow)


def check(doc: Backup) -> list[BackupManualRule]:
    """Refuse a document any object of which the admin routes would refuse (4xx naming the field); returns the
    manual rules as they will be stored (names in lower case)."""
    rules: list[BackupManualRule] = []
    for i, item in enumerate(doc.manual_rules):
        where = f"manual_rules[{i}]"
        _at(where, partial(validation.path_id, item.rule_id, "rule_id"))
        rule = validation.rule(item.rule.to_rule(), f"{where}.rule")
        for name in ("agent_id", "tunnel_id"):
            if (value := getattr(item, name)) is not None:
                validation.path_id(value, f"{where}.{name}")
        rules.append(msgspec.structs.replace(item, rule=msgspec.convert(msgspec.to_builtins(rule), RuleInput)))
    _unique([r.rule.hostname + (r.rule.path or "") for r in rules], "manual_rules", "hostname + path")
    _unique([r.rule_id for r in rules], "manual_rules", "rule_id")
    for i, group in enumerate(doc.access_groups):
        where = f"access_groups[{i}]"
        _at(where, partial(accessgroups.chosen_group_id, group.group_id))
        _at(where, partial(accessgroups.check, group))
    _unique([g.group_id for g in doc.access_groups], "access_groups", "group_id")
    for i, agent in enumerate(doc.agents):
        _at(f"agents[{i}]", partial(_check_agent, agent))
    _unique([a.agent_id for a in doc.agents], "agents", "agent_id")
    return rules


# ---- restore: compare and apply -------------------------------------------------------------------------------


def _group_body(group: BackupAccessGroup) -> AccessGroupRequest:
    return AccessGroupRequest(**{f: getattr(group, f) for f in AccessGroupRequest.__struct_fields__})


def _agent_action(wanted: BackupAgent, have: AgentRecord | None) -> tuple[str, list[str]]:
    if have is None:
        host = f" (host {wanted.hostname})" if wanted.hostname else ""
        return "missing", [
            f"not registered here{host}: create a key for its host, start the agent with it, then enrol the new "
            f"agent with tunnel_id {wanted.tunnel_id or '(none: a new tunnel)'} and this policy"
        ]
    differs = [f for f in AGENT_FIELDS if getattr(wanted, f) != getattr(have, f)]
    if not differs:
        return "unchanged", []
    if have.tunnel_id is None and wanted.tunnel_id is not None:
        return "create", [f"enrol with tunnel {wanted.tunnel_id} (adopted) and the backup's policy"]
    return "conflict", [f"differs in {', '.join(differs)}; left as it is (change it with flareport agents)"]


async def _compare(ctx: ApiContext, doc: Backup, rules: list[BackupManualRule]) -> list[dict[str, Any]]:
    groups = {g.group_id: msgspec.to_builtins(g) for g in await accessgroups.every(ctx)}
    stored = await manualrules.stored(ctx)
    by_key = {r.rule.key: msgspec.to_builtins(r) for r in stored.values()}
    known = await agents.known(ctx)
    report: list[dict[str, Any]] = []
    action: str
    for group in doc.access_groups:
        action = declarations.group_action(msgspec.to_builtins(group), groups.get(group.group_id))
        notes = ["an access group with this id differs; left as it is"] if action == "conflict" else []
        report.append(declarations.entry("access_group", group.group_id, action, notes))
    for rule in rules:
        key = rule.rule.hostname + (rule.rule.path or "")
        existing = by_key.get(key)
        action = declarations.rule_action(msgspec.to_builtins(rule), existing, RULE_FIELDS)
        notes = []
        if existing is not None and action == "conflict":
            notes.append(f"manual rule {existing['rule_id']} publishes {key} differently; left as it is")
        elif action == "create" and rule.rule_id in stored:
            notes.append(f"rule id {rule.rule_id} is taken by another hostname here: created under a new id")
        report.append(declarations.entry("manual_rule", key, action, notes))
    for agent in doc.agents:
        action, notes = _agent_action(agent, known.get(agent.agent_id))
        report.append(declarations.entry("agent", agent.agent_id, action, notes))
    return report


async def _create(ctx: ApiContext, doc: Backup, rules: list[BackupManualRule], item: dict[str, Any]) -> None:
    if item["kind"] == "access_group":
        group = next(g for g in doc.access_groups if g.group_id == item["id"])
        await accessgroups.save(ctx, group.group_id, _group_body(group), creating=True)
    elif item["kind"] == "manual_rule":
        rule = next(r for r in rules if r.rule.hostname + (r.rule.path or "") == item["id"])
        taken = rule.rule_id in await manualrules.stored(ctx)
        rule_id = manualrules.new_rule_id() if taken else rule.rule_id
        body = ManualRuleRequest(rule=rule.rule, agent_id=rule.agent_id, tunnel_id=rule.tunnel_id)
        await manualrules.save(ctx, rule_id, body, creating=True)
    else:
        agent = next(a for a in doc.agents if a.agent_id == item["id"])
        enrol = EnrollRequest(
            tunnel_id=agent.tunnel_id,
            allowed_zones=agent.allowed_zones,
            allowed_suffixes=agent.allowed_suffixes,
            allow_wildcard=agent.allow_wildcard,
            allow_apex=agent.allow_apex,
            origin_allow=agent.origin_allow,
        )
        await agents.enroll(ctx, agent.agent_id, enrol)
        if (await agents.find(ctx, agent.agent_id)).display_name != agent.display_name:
            await agents.rename(ctx, agent.agent_id, agent.display_name)


_ORDER = {"access_group": 0, "manual_rule": 1, "agent": 2}  # groups first: rules may name them


async def restore(ctx: ApiContext, doc: Backup, *, apply: bool) -> RestoreReport:
    """Check the whole document, compare it with this deployment and, with ``apply``, create what is missing."""
    rules = check(doc)
    report = await _compare(ctx, doc, rules)
    if apply:
        for item in sorted(report, key=lambda i: _ORDER[i["kind"]]):
            if item["action"] != "create":
                continue
            try:
                await _create(ctx, doc, rules, item)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                # Changed by someone else since the comparison: reported, never overwritten.
                item["action"] = "conflict"
                item["notes"].append(exc.message)
                continue
            item["action"] = "created"
    return RestoreReport(
        applied=apply,
        source_prefix=doc.source_prefix,
        created_at=doc.created_at,
        objects=tuple(msgspec.convert(item, RestoreItem) for item in report),
        summary=declarations.summary(report),
        redo=doc.redo,
    )
