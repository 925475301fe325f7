"""The UI's forms: each does what the matching admin API route does, with the same validation and the same intents.

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

from flareport_api import admin_agents, validation
from flareport_api.admin_agents import _REMOVABLE, _agent, _names, _origin_kinds
from flareport_api.admin_ops import _letter
from flareport_api.admin_rules import (
    SYSTEM_ACCESS_GROUPS,
    _manual_rules,
    _store_with_intent,
    delete_stored_group,
    refuse_system_group,
    save_group,
    save_manual,
)
from flareport_api.clientaddr import is_https
from flareport_api.schemas import AccessGroup, AccessGroupRequest, ManualRuleRequest
from flareport_api.state import ApiContext
from flareport_api.ui.guards import FormError, done, field, form, render
from flareport_api.ui.pages import form_can_edit_group, form_can_edit_rule
from flareport_api.ui.sessions import Session
from flareport_common.messages.base import Message, new_id
from flareport_common.messages.intents import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentPolicyChanged,
    AgentRemoved,
    AgentRenamed,
    KeyRolled,
    ManualRuleDeleted,
    ReconcileRequested,
)
from flareport_common.parcels import stash

Form = MultiDictProxy[Any]


async def _intent(ctx: ApiContext, intent: Message) -> None:
    await ctx.producer.send(ctx.keys.intents, intent)


def _listed(data: Form, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in field(data, name).replace(",", " ").split() if part.strip())


# ---- keys ----------------------------------------------------------------------------------------------------


@form("/ui/keys")
async def create_key(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    label = validation.text(field(data, "label"), "label")
    key, stored = await ctx.store.create(label)
    # The URL the admin reached us at is the URL agents should use (behind a TLS proxy: https).
    https = is_https(request)
    master_url = f"{'https' if https else 'http'}://{request.host}"
    return render(
        request,
        "keys.html",
        keys=list(reversed(await ctx.store.all())),
        created={"key": key, "info": stored, "master_url": master_url},
        session=session,
        flash=None,
    )


async def _stored(ctx: ApiContext, data: Form) -> Any:
    key_id = validation.path_id(field(data, "key_id"), "key_id")
    stored = await ctx.store.get(key_id)
    if stored is None:
        raise FormError(f"no key {key_id}")
    return stored


@form("/ui/keys")
async def revoke_key(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    stored = await _stored(ctx, data)
    await admin_agents.revoke(ctx, stored)
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
    stored = await _stored(ctx, data)
    if stored.agent_id is None or stored.status != "active":
        raise FormError("Only an active key bound to an agent can be rolled (there is no agent to deliver it to).")
    key, new = await ctx.store.create(stored.label, agent_id=stored.agent_id)
    # The intents stream carries only where the key waits for its agent (flareport_common.parcels).
    ref = await stash(ctx.redis, ctx.keys, stored.agent_id, key)
    await _intent(ctx, KeyRolled(agent_id=stored.agent_id, key_id=new.key_id, secret_ref=ref))
    message = f"New key {new.key_id} is on its way to agent {stored.agent_id}; the old key is revoked once it acks."
    raise await done(request, session, message, data, "/ui/keys")


# ---- agents --------------------------------------------------------------------------------------------------


async def _agent_of(ctx: ApiContext, request: web.Request) -> Any:
    agent_id = validation.path_id(request.match_info["agent_id"], "agent_id")
    return await _agent(ctx, agent_id)


@form("/ui/agents")
async def enroll(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    tunnel_name, tunnel_id = field(data, "tunnel_name") or None, field(data, "tunnel_id") or None
    if tunnel_name and tunnel_id:
        raise FormError("Give a tunnel name (create) or a tunnel id (adopt), not both.")
    if tunnel_name:
        tunnel_name = validation.text(tunnel_name, "tunnel_name", maximum=100)
    if tunnel_id:
        tunnel_id = validation.path_id(tunnel_id, "tunnel_id")
    zones = validation.names(_listed(data, "allowed_zones"), "allowed_zones")
    suffixes = validation.names(_listed(data, "allowed_suffixes"), "allowed_suffixes", suffix=True)
    if not tunnel_name and not tunnel_id:
        tunnel_name = f"flareport-{record.agent_id}"
    await _intent(
        ctx,
        AgentEnrolled(
            agent_id=record.agent_id,
            tunnel_name=tunnel_name,
            tunnel_id=tunnel_id,
            allowed_zones=zones,
            allowed_suffixes=suffixes,
            # The form has no policy flags: an enrolment keeps the ones the agent has (the policy form sets them).
            allow_wildcard=record.allow_wildcard,
            allow_apex=record.allow_apex,
            origin_allow=record.origin_allow,
        ),
    )
    tunnel = f"tunnel {tunnel_id}" if tunnel_id else f"new tunnel {tunnel_name!r}"
    raise await done(request, session, f"Enrolling {record.display_name} with {tunnel}.", data, "/ui/agents")


@form("/ui/agents")
async def policy(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    """The whole policy as the form shows it (prefilled with the current one), like ``PATCH .../policy``."""
    record = await _agent_of(ctx, request)
    intent = AgentPolicyChanged(
        agent_id=record.agent_id,
        allowed_zones=_names(_listed(data, "allowed_zones"), "allowed_zones"),
        allowed_suffixes=_names(_listed(data, "allowed_suffixes"), "allowed_suffixes", suffix=True),
        allow_wildcard=field(data, "allow_wildcard") == "true",
        allow_apex=field(data, "allow_apex") == "true",
        origin_allow=_origin_kinds(tuple(str(v) for v in data.getall("origin_allow", []))),
    )
    await _intent(ctx, intent)
    raise await done(request, session, f"Changing what {record.display_name} may publish.", data, "/ui/agents")


@form("/ui/agents")
async def rename(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    name = validation.text(field(data, "display_name"), "display_name")
    await _intent(ctx, AgentRenamed(agent_id=record.agent_id, display_name=name))
    raise await done(request, session, f"Renaming {record.agent_id} to {name!r}.", data, "/ui/agents")


@form("/ui/agents")
async def decommission(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    await _intent(ctx, AgentDecommissioned(agent_id=record.agent_id))
    raise await done(request, session, f"Decommissioning {record.display_name}.", data, "/ui/agents")


@form("/ui/agents")
async def remove(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    record = await _agent_of(ctx, request)
    if record.status not in _REMOVABLE and field(data, "force") != "true":
        raise FormError(f"{record.display_name} is {record.status}: decommission it first, or tick 'force'.")
    await ctx.store.revoke_agent_keys(record.agent_id)  # a removed agent must not come back with its old key
    await _intent(ctx, AgentRemoved(agent_id=record.agent_id))
    data_back = {"back": "/ui/agents"}
    raise await done(request, session, f"Removed {record.display_name}; its keys are revoked.", data_back, "/ui/agents")


# ---- operations ----------------------------------------------------------------------------------------------


@form("/ui/dead-letters")
async def replay(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    entry_id = validation.entry_id(field(data, "entry_id"), "entry_id")
    entries = await ctx.redis.xrange(ctx.keys.dead_letters, entry_id, entry_id, count=1)
    letter = _letter(*entries[0]) if entries else None
    if letter is None:
        raise FormError(f"Dead letter {entry_id} is gone or unreadable.")
    if not letter.source_stream.startswith(ctx.keys.prefix) or letter.source_stream == ctx.keys.dead_letters:
        raise FormError(f"Source stream {letter.source_stream!r} is not one of ours; not replayed.")
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.xadd(letter.source_stream, letter.payload)  # type: ignore[arg-type]
    pipe.xdel(ctx.keys.dead_letters, entry_id)
    await pipe.execute()
    raise await done(request, session, f"Replayed {entry_id} onto {letter.source_stream}.", data, "/ui/dead-letters")


@form("/ui/")
async def reconcile(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    await _intent(ctx, ReconcileRequested(scope="all", verify=True))
    raise await done(request, session, "Full reconcile requested.", data, "/ui/")


@form("/ui/manual-rules")
async def delete_manual(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    rule_id = validation.path_id(field(data, "rule_id"), "rule_id")
    if not await ctx.redis.hexists(ctx.keys.api_manual_rules, rule_id):
        raise FormError(f"No manual rule {rule_id}.")
    await _store_with_intent(ctx, ctx.keys.api_manual_rules, rule_id, None, ManualRuleDeleted(rule_id=rule_id))
    raise await done(request, session, f"Manual rule {rule_id} deleted.", data, "/ui/manual-rules")


@form("/ui/access-groups")
async def delete_group(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    group_id = validation.path_id(field(data, "group_id"), "group_id")
    if group_id not in SYSTEM_ACCESS_GROUPS and not await ctx.redis.hexists(ctx.keys.api_access_groups, group_id):
        raise FormError(f"No access group {group_id}.")
    await delete_stored_group(ctx, group_id)  # a system group: the API's 409, shown as the notice
    raise await done(request, session, f"Access group {group_id} deleted.", data, "/ui/access-groups")


def _optional(data: Form, name: str) -> str | None:
    return field(data, name) or None


def _convert(raw: dict[str, Any], kind: type[Any]) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise FormError(f"Not saved: {exc}") from exc


@form("/ui/manual-rules")
async def create_manual(request: web.Request, ctx: ApiContext, session: Session, data: Form) -> web.StreamResponse:
    rule: dict[str, Any] = {"hostname": field(data, "hostname"), "service": field(data, "service")}
    for name in ("path", "zone_name"):
        if value := _optional(data, name):
            rule[name] = value
    if policy := _optional(data, "access_policy"):
        rule["access"] = {"policy": policy, "groups": list(_listed(data, "access_groups"))}
    raw = {"rule": rule, "agent_id": _optional(data, "agent_id"), "tunnel_id": _optional(data, "tunnel_id")}
    body = _convert(raw, ManualRuleRequest)
    rule_id = _optional(data, "rule_id")  # present when the form edits an existing rule
    if rule_id is not None:
        existing = (await _manual_rules(ctx)).get(rule_id)
        if existing is not None and not form_can_edit_rule(existing):
            raise FormError("Not saved: this rule has settings the form cannot show; edit it with the API or CLI.")
    stored = await save_manual(ctx, rule_id or "mr_" + new_id()[:16], body, creating=rule_id is None)
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
        refuse_system_group(group_id, "replaced")
        raw_group = await ctx.redis.hget(ctx.keys.api_access_groups, group_id)
        if raw_group is not None and not form_can_edit_group(msgspec.json.decode(raw_group, type=AccessGroup)):
            raise FormError("Not saved: this group has rules the form cannot show; edit it with the API or CLI.")
        stored = await save_group(ctx, group_id, body, creating=False)
    else:
        # The id labels reference (access.group=<id>); left empty, the API derives it from the name.
        stored = await save_group(ctx, _optional(data, "new_group_id"), body, creating=True)
    message = f"Access group {stored.name!r} saved as {stored.group_id} (labels: access.group={stored.group_id})."
    raise await done(request, session, message, data, "/ui/access-groups")
