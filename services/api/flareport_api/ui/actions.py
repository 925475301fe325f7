"""The UI's forms: each parses its fields and calls the use case the matching admin API route calls
(``flareport_api.usecases``), so it has the same validation and writes the same intents; a refusal is shown with
the API's own message.

Keys are changed in the key store (revocation takes effect on the agent's very next request); everything that
touches Cloudflare or an agent becomes an intent on the intents stream for the reconciler, exactly like
``POST /api/v1/agents/{id}/enroll`` and friends. A freshly generated key is rendered into the response of the
POST itself (never stored, never redirected through a URL), so it is shown exactly once.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from multidict import MultiDictProxy

from flareport_api import validation
from flareport_api.clientaddr import master_url
from flareport_api.keystore import StoredKey
from flareport_api.schemas import AccessGroupRequest, EnrollRequest, ManualRuleRequest, PolicyRequest
from flareport_api.state import ApiContext
from flareport_api.ui.guards import FormError, done, field, form, render
from flareport_api.ui.pages import ORIGIN_FLAGS, form_can_edit_group, form_can_edit_rule
from flareport_api.ui.sessions import Session
from flareport_api.usecases import accessgroups, agents, keys, manualrules, operations
from flareport_common.readmodel import AgentRecord

Form = MultiDictProxy[Any]


def _listed(data: Form, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in field(data, name).replace(",", " ").split() if part.strip())


def _optional(data: Form, name: str) -> str | None:
    return field(data, name) or None


# ---- keys ----------------------------------------------------------------------------------------------------


@form("/ui/keys")
async def create_key(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    key, stored = await keys.create(ctx, field(data, "label"))
    env, compose = keys.onboarding(master_url(request), key, stored.label)
    return render(
        request,
        "keys.html",
        keys=list(reversed(await ctx.store.all())),
        created={"key": key, "info": stored, "env": env, "compose": compose},
        session=session,
        flash=None,
    )


async def _stored_key(ctx: ApiContext, data: Form) -> StoredKey:
    return await keys.find(ctx, validation.path_id(field(data, "key_id"), "key_id"))


@form("/ui/keys")
async def revoke_key(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    stored = await _stored_key(ctx, data)
    await keys.revoke(ctx, stored)
    raise await done(
        request,
        session,
        f"Key {stored.key_id} ({stored.label}) revoked. To keep it refused even after a loss of Redis data, add "
        f"{stored.key_id} to FLAREPORT_REVOKED_AGENT_KEYS.",
        data,
        "/ui/keys",
    )


@form("/ui/keys")
async def roll_key(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    rolled = await keys.roll(ctx, await _stored_key(ctx, data))
    message = (
        f"New key {rolled.new_key_id} is on its way to agent {rolled.agent_id}; the old key is revoked once it acks."
    )
    raise await done(request, session, message, data, "/ui/keys")


# ---- agents --------------------------------------------------------------------------------------------------


async def _agent_of(ctx: ApiContext, request: web.Request) -> AgentRecord:
    return await agents.find(ctx, validation.path_id(request.match_info["agent_id"], "agent_id"))


@form("/ui/agents")
async def enroll(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    tunnel_name, tunnel_id = _optional(data, "tunnel_name"), _optional(data, "tunnel_id")
    body = EnrollRequest(
        tunnel_name=tunnel_name,
        tunnel_id=tunnel_id,
        allowed_zones=_listed(data, "allowed_zones"),
        allowed_suffixes=_listed(data, "allowed_suffixes"),
        # The form has no policy flags: an enrolment keeps the ones the agent has (the policy form sets them).
        allow_wildcard=record.allow_wildcard,
        allow_apex=record.allow_apex,
        origin_allow=record.origin_allow,
    )
    await agents.enroll(ctx, record.agent_id, body)
    created = tunnel_name or f"flareport-{record.agent_id}"  # the use case's default name
    tunnel = f"tunnel {tunnel_id}" if tunnel_id else f"new tunnel {created!r}"
    raise await done(request, session, f"Enrolling {record.display_name} with {tunnel}.", data, "/ui/agents")


@form("/ui/agents")
async def policy(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    """The whole policy as the form shows it (prefilled with the current one), like ``PATCH .../policy``."""
    record = await _agent_of(ctx, request)
    body = PolicyRequest(
        allowed_zones=_listed(data, "allowed_zones"),
        allowed_suffixes=_listed(data, "allowed_suffixes"),
        allow_wildcard=field(data, "allow_wildcard") == "true",
        allow_apex=field(data, "allow_apex") == "true",
        origin_allow=tuple(str(v) for v in data.getall("origin_allow", [])),
    )
    await agents.change_policy(ctx, record.agent_id, body)
    raise await done(request, session, f"Changing what {record.display_name} may publish.", data, "/ui/agents")


@form("/ui/agents")
async def rename(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    name = field(data, "display_name")
    await agents.rename(ctx, record.agent_id, name)
    raise await done(request, session, f"Renaming {record.agent_id} to {name!r}.", data, "/ui/agents")


@form("/ui/agents")
async def decommission(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    await agents.decommission(ctx, record.agent_id)
    raise await done(request, session, f"Decommissioning {record.display_name}.", data, "/ui/agents")


@form("/ui/agents")
async def remove(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    force = field(data, "force") == "true"
    if not agents.removable(record) and not force:  # said in the form's words, not the API's force=true
        raise FormError(f"{record.display_name} is {record.status}: decommission it first, or tick 'force'.")
    await agents.remove(ctx, record.agent_id, force=force)
    data_back = {"back": "/ui/agents"}
    raise await done(request, session, f"Removed {record.display_name}; its keys are revoked.", data_back, "/ui/agents")


# ---- operations ----------------------------------------------------------------------------------------------


@form("/ui/dead-letters")
async def replay(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    entry_id = validation.entry_id(field(data, "entry_id"), "entry_id")
    replayed = await operations.replay(ctx, entry_id)
    message = f"Replayed {entry_id} onto {replayed.source_stream}."
    raise await done(request, session, message, data, "/ui/dead-letters")


@form("/ui/")
async def reconcile(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    await operations.reconcile(ctx, "all", verify=True)
    raise await done(request, session, "Full reconcile requested.", data, "/ui/")


# ---- declarations --------------------------------------------------------------------------------------------


@form("/ui/manual-rules")
async def delete_manual(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    rule_id = validation.path_id(field(data, "rule_id"), "rule_id")
    await manualrules.delete(ctx, rule_id)
    raise await done(request, session, f"Manual rule {rule_id} deleted.", data, "/ui/manual-rules")


@form("/ui/access-groups")
async def delete_group(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    group_id = validation.path_id(field(data, "group_id"), "group_id")
    await accessgroups.delete(ctx, group_id)  # a system group: the API's 409, shown as the notice
    raise await done(request, session, f"Access group {group_id} deleted.", data, "/ui/access-groups")


def _convert(raw: dict[str, Any], kind: type[Any]) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise FormError(f"Not saved: {exc}") from exc


_SWITCH = {"on": True, "off": False}


def _origin(data: Form) -> dict[str, Any]:
    """The origin options the admin set; a field left empty (cloudflared's default) is not sent. Any other value
    than on/off goes through as it is, so the API's own check refuses it naming the field."""
    origin: dict[str, Any] = {}
    for name in ("origin_server_name", "http_host_header"):
        if value := _optional(data, name):
            origin[name] = value
    for name, _ in ORIGIN_FLAGS:
        if value := _optional(data, name):
            origin[name] = _SWITCH.get(value, value)
    return origin


@form("/ui/manual-rules")
async def create_manual(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    rule: dict[str, Any] = {"hostname": field(data, "hostname"), "service": field(data, "service")}
    for name in ("path", "zone_name"):
        if value := _optional(data, name):
            rule[name] = value
    if policy := _optional(data, "access_policy"):
        rule["access"] = {"policy": policy, "groups": list(_listed(data, "access_groups"))}
    if origin := _origin(data):
        rule["origin"] = origin
    raw = {"rule": rule, "agent_id": _optional(data, "agent_id"), "tunnel_id": _optional(data, "tunnel_id")}
    body = _convert(raw, ManualRuleRequest)
    rule_id = _optional(data, "rule_id")  # present when the form edits an existing rule
    if rule_id is not None:
        existing = await manualrules.get(ctx, validation.path_id(rule_id, "rule_id"))
        if not form_can_edit_rule(existing):
            raise FormError("Not saved: this rule has settings the form cannot show; edit it with the API or CLI.")
    stored = await manualrules.save(ctx, rule_id or manualrules.new_rule_id(), body, creating=rule_id is None)
    raise await done(request, session, f"Manual rule for {stored.rule.key} saved.", data, "/ui/manual-rules")


def _selectors(data: Form, name: str) -> list[dict[str, Any]]:
    """``a@x.com, @y.org`` -> Cloudflare Access selectors: an email, or a whole email domain for ``@domain``."""
    found: list[dict[str, Any]] = []
    for item in _listed(data, name):
        if item.startswith("@"):
            found.append({"email_domain": {"domain": item[1:]}})
        else:
            found.append({"email": {"email": item}})
    return found


@form("/ui/access-groups")
async def create_group(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    raw: dict[str, Any] = {
        "name": field(data, "name"),
        "decision": field(data, "decision") or "allow",
        "include": _selectors(data, "include"),
        "exclude": _selectors(data, "exclude"),
        "session_duration": _optional(data, "session_duration"),
    }
    body = _convert(raw, AccessGroupRequest)
    group_id = _optional(data, "group_id")  # present when the form edits an existing group
    if group_id is not None:
        group_id = validation.path_id(group_id, "group_id")
        accessgroups.refuse_system_group(group_id, "replaced")
        if not form_can_edit_group(await accessgroups.get(ctx, group_id)):
            raise FormError("Not saved: this group has rules the form cannot show; edit it with the API or CLI.")
        stored = await accessgroups.save(ctx, group_id, body, creating=False)
    else:
        # The id labels reference (access.group=<id>); left empty, the API derives it from the name.
        stored = await accessgroups.save(ctx, _optional(data, "new_group_id"), body, creating=True)
    message = f"Access group {stored.name!r} saved as {stored.group_id} (labels: access.group={stored.group_id})."
    raise await done(request, session, message, data, "/ui/access-groups")
