"""Admin routes for agent keys and agents: create/list/revoke/roll keys; list, inspect, enrol, rename,
decommission and remove agents.

Everything that changes Cloudflare or an agent goes out as an intent on the intents stream; the reconciler
acts on it. The API only changes what it owns itself: key material (revoke takes effect on the agent's very
next request, since keys are never cached) and key bindings.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from flareport_api import quotas, readstore, validation
from flareport_api.errors import ApiError, invalid, json_response, not_found, query_choice, read_body
from flareport_api.keystore import StoredKey
from flareport_api.schemas import (
    Accepted,
    AgentDetail,
    AgentList,
    AgentView,
    CommandView,
    EnrollRequest,
    KeyCreated,
    KeyCreateRequest,
    KeyInfo,
    KeyList,
    KeyRolledResponse,
    PolicyRequest,
    RenameRequest,
    view,
)
from flareport_api.state import ApiContext, QueryParam, Route, context
from flareport_common.messages.base import Message
from flareport_common.messages.intents import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentKeysRevoked,
    AgentPolicyChanged,
    AgentRemoved,
    AgentRenamed,
    KeyRolled,
)
from flareport_common.parcels import stash
from flareport_common.policy import kinds_hint, unknown_kinds
from flareport_common.readmodel import AgentRecord

STATUSES = ("pending", "active", "offline", "decommissioning", "decommissioned", "removed")
# Removing forgets an agent; one that is still connected must be decommissioned first (or forced).
_REMOVABLE = ("pending", "offline", "decommissioned", "removed")
# Entries of one allow-list: enough for any real fleet, bounded so a policy stays a small document.
_MAX_NAMES = 256


async def send_intent(ctx: ApiContext, intent: Message) -> web.Response:
    stream_id = await ctx.producer.send(ctx.keys.intents, intent)
    return json_response(Accepted(intent_id=intent.id, stream_id=stream_id), status=202)


def _key_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["key_id"], "key_id")


# ---- keys ----------------------------------------------------------------------------------------------------


async def create_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, KeyCreateRequest)
    label = validation.text(body.label, "label")
    key, stored = await ctx.store.create(label)
    return json_response(KeyCreated(key=key, info=stored.info()), status=201)


async def list_keys(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(KeyList(keys=tuple(k.info() for k in await ctx.store.all())))


async def get_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    stored = await ctx.store.get(_key_id(request))
    if stored is None:
        raise not_found("key", request.match_info["key_id"])
    return json_response(stored.info())


async def revoke(ctx: ApiContext, stored: StoredKey) -> None:
    """Revoke a key; when it was its agent's last valid key, the agent's hostnames are released (an intent): a
    revoked host must not keep names nobody can update any more, nor block others from them."""
    await ctx.store.revoke(stored)
    if stored.agent_id is None:
        return
    if not any(other.status == "active" for other in await ctx.store.of_agent(stored.agent_id)):
        await ctx.producer.send(ctx.keys.intents, AgentKeysRevoked(agent_id=stored.agent_id))


async def revoke_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    key_id = _key_id(request)
    stored = await ctx.store.get(key_id)
    if stored is None:
        raise not_found("key", key_id)
    await revoke(ctx, stored)
    updated = await ctx.store.get(key_id)
    assert updated is not None
    return json_response(updated.info())


async def roll_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    key_id = _key_id(request)
    stored = await ctx.store.get(key_id)
    if stored is None:
        raise not_found("key", key_id)
    if stored.agent_id is None or stored.status != "active":
        raise ApiError(409, "not_rollable", "only an active key bound to an agent can be rolled (nothing to deliver)")
    key, new = await ctx.store.create(stored.label, agent_id=stored.agent_id)
    # The intents stream carries only where the key waits for its agent (flareport_common.parcels).
    ref = await stash(ctx.redis, ctx.keys, stored.agent_id, key)
    intent = KeyRolled(agent_id=stored.agent_id, key_id=new.key_id, secret_ref=ref)
    await ctx.producer.send(ctx.keys.intents, intent)
    return json_response(KeyRolledResponse(agent_id=stored.agent_id, new_key_id=new.key_id, intent_id=intent.id))


# ---- agents --------------------------------------------------------------------------------------------------


async def _known_agents(ctx: ApiContext) -> dict[str, AgentRecord]:
    """The read model's agents, plus agents that registered but that the reconciler has not recorded yet."""
    found = {record.agent_id: record for record in await readstore.agents(ctx.redis, ctx.keys)}
    for stored in await ctx.store.all():
        if stored.agent_id and stored.agent_id not in found and stored.status == "active":
            found[stored.agent_id] = AgentRecord(
                agent_id=stored.agent_id,
                display_name=stored.display_name or stored.label,
                registered_at=stored.registered_at,
            )
    return found


async def _agent(ctx: ApiContext, agent_id: str) -> AgentRecord:
    record = await readstore.agent(ctx.redis, ctx.keys, agent_id)
    if record is not None:
        return record
    bound = [k for k in await ctx.store.of_agent(agent_id) if k.status == "active"]
    if not bound:
        raise not_found("agent", agent_id)
    return AgentRecord(
        agent_id=agent_id,
        display_name=bound[0].display_name or bound[0].label,
        registered_at=bound[0].registered_at,
    )


def _agent_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["agent_id"], "agent_id")


async def list_agents(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    status = query_choice(request, "status", STATUSES)
    agents = sorted((await _known_agents(ctx)).values(), key=lambda a: a.agent_id)
    if status is not None:
        agents = [a for a in agents if a.status == status]
    return json_response(AgentList(agents=tuple(view(a, AgentView) for a in agents)))


async def agent_detail(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    record = await _agent(ctx, agent_id)
    detail = AgentDetail(
        agent=view(record, AgentView),
        keys=tuple(k.info() for k in await ctx.store.of_agent(agent_id)),
        heartbeats=tuple(await readstore.heartbeats(ctx.redis, ctx.keys, agent_id)),
        commands=tuple(view(c, CommandView) for c in await readstore.command_history(ctx.redis, ctx.keys, agent_id)),
        quota_refusals=tuple(await quotas.refusals(ctx.redis, ctx.keys, agent_id)),
    )
    return json_response(detail)


async def enroll(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    body = await read_body(request, EnrollRequest)
    if body.tunnel_name is not None and body.tunnel_id is not None:
        raise invalid("tunnel_id", "give tunnel_name (create) or tunnel_id (adopt), not both")
    tunnel_name = body.tunnel_name
    if tunnel_name is not None:
        tunnel_name = validation.text(tunnel_name, "tunnel_name", maximum=100)
    tunnel_id = body.tunnel_id
    if tunnel_id is not None:
        tunnel_id = validation.path_id(tunnel_id, "tunnel_id")
    zones = _names(body.allowed_zones, "allowed_zones")
    suffixes = _names(body.allowed_suffixes, "allowed_suffixes", suffix=True)
    kinds = _origin_kinds(body.origin_allow)
    await _agent(ctx, agent_id)
    if tunnel_name is None and tunnel_id is None:
        tunnel_name = f"flareport-{agent_id}"  # the default: one tunnel per agent, named after it
    intent = AgentEnrolled(
        agent_id=agent_id,
        tunnel_name=tunnel_name,
        tunnel_id=tunnel_id,
        allowed_zones=zones,
        allowed_suffixes=suffixes,
        allow_wildcard=body.allow_wildcard,
        allow_apex=body.allow_apex,
        origin_allow=kinds,
    )
    return await send_intent(ctx, intent)


def _names(values: tuple[str, ...], field: str, *, suffix: bool = False) -> tuple[str, ...]:
    if len(values) > _MAX_NAMES:
        raise invalid(field, f"at most {_MAX_NAMES} entries, got {len(values)}")
    return tuple(dict.fromkeys(validation.names(values, field, suffix=suffix)))


def _origin_kinds(values: tuple[str, ...]) -> tuple[str, ...]:
    for index, kind in enumerate(values):
        if unknown_kinds([kind]):
            raise invalid(f"origin_allow[{index}]", f"unknown origin kind {kind[:64]!r}: {kinds_hint()}")
    return tuple(sorted(set(values)))


async def set_policy(request: web.Request) -> web.StreamResponse:
    """Change what an agent may publish (its allow-lists and publishing flags); the admin alone decides it."""
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    body = await read_body(request, PolicyRequest)
    if all(v is None for v in msgspec.structs.astuple(body)):
        fields = ", ".join(f.name for f in msgspec.structs.fields(PolicyRequest))
        raise invalid("$", f"nothing to change: give at least one of {fields}")
    zones = None if body.allowed_zones is None else _names(body.allowed_zones, "allowed_zones")
    suffixes = None if body.allowed_suffixes is None else _names(body.allowed_suffixes, "allowed_suffixes", suffix=True)
    kinds = None if body.origin_allow is None else _origin_kinds(body.origin_allow)
    current = await _agent(ctx, agent_id)
    intent = AgentPolicyChanged(
        agent_id=agent_id,
        allowed_zones=current.allowed_zones if zones is None else zones,
        allowed_suffixes=current.allowed_suffixes if suffixes is None else suffixes,
        allow_wildcard=current.allow_wildcard if body.allow_wildcard is None else body.allow_wildcard,
        allow_apex=current.allow_apex if body.allow_apex is None else body.allow_apex,
        origin_allow=current.origin_allow if kinds is None else kinds,
    )
    return await send_intent(ctx, intent)


async def rename(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    body = await read_body(request, RenameRequest)
    name = validation.text(body.display_name, "display_name")
    await _agent(ctx, agent_id)
    return await send_intent(ctx, AgentRenamed(agent_id=agent_id, display_name=name))


async def decommission(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    await _agent(ctx, agent_id)
    return await send_intent(ctx, AgentDecommissioned(agent_id=agent_id))


async def remove(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    force = query_choice(request, "force", ("true", "false")) == "true"
    record = await _agent(ctx, agent_id)
    if record.status not in _REMOVABLE and not force:
        raise ApiError(
            409, "agent_online", f"agent is {record.status}; decommission it first, or remove with force=true"
        )
    # A removed agent must not come back with its old key.
    await ctx.store.revoke_agent_keys(agent_id)
    return await send_intent(ctx, AgentRemoved(agent_id=agent_id))


_ADMIN = (401, 422, 429)
_STATUS = QueryParam("status", {"type": "string", "enum": list(STATUSES)}, "only agents with this status")
_FORCE = QueryParam("force", {"type": "string", "enum": ["true", "false"]}, "remove even if the agent is online")
ROUTES = [
    Route("POST", "/api/v1/keys", create_key, "Create an agent key (shown once)", "keys", "admin",
          KeyCreateRequest, KeyCreated, status=201, errors=(400, 413, *_ADMIN)),
    Route("GET", "/api/v1/keys", list_keys, "List agent keys", "keys", "admin", None, KeyList, errors=(401, 429)),
    Route("GET", "/api/v1/keys/{key_id}", get_key, "One agent key", "keys", "admin", None, KeyInfo,
          errors=(404, *_ADMIN)),
    Route("POST", "/api/v1/keys/{key_id}/revoke", revoke_key, "Revoke a key (refused from the next request on)",
          "keys", "admin", None, KeyInfo, errors=(404, *_ADMIN)),
    Route("POST", "/api/v1/keys/{key_id}/roll", roll_key, "Make a new key and deliver it to the agent",
          "keys", "admin", None, KeyRolledResponse, errors=(404, 409, *_ADMIN)),
    Route("GET", "/api/v1/agents", list_agents, "List agents", "agents", "admin", None, AgentList,
          query=(_STATUS,), errors=_ADMIN),
    Route("GET", "/api/v1/agents/{agent_id}", agent_detail, "Agent detail with keys, heartbeats and commands",
          "agents", "admin", None, AgentDetail, errors=(404, *_ADMIN)),
    Route("DELETE", "/api/v1/agents/{agent_id}", remove, "Remove an (offline) agent and revoke its keys",
          "agents", "admin", None, Accepted, status=202, query=(_FORCE,), errors=(404, 409, *_ADMIN)),
    Route("POST", "/api/v1/agents/{agent_id}/enroll", enroll, "Enrol an agent: create or adopt its tunnel",
          "agents", "admin", EnrollRequest, Accepted, status=202, errors=(400, 404, 413, *_ADMIN)),
    Route("PATCH", "/api/v1/agents/{agent_id}/policy", set_policy,
          "Change what an agent may publish: allow-lists, wildcard and apex names, origin kinds", "agents", "admin",
          PolicyRequest, Accepted, status=202, errors=(400, 404, 413, *_ADMIN)),
    Route("POST", "/api/v1/agents/{agent_id}/rename", rename, "Rename an agent", "agents", "admin",
          RenameRequest, Accepted, status=202, errors=(400, 404, 413, *_ADMIN)),
    Route("POST", "/api/v1/agents/{agent_id}/decommission", decommission, "Decommission an agent",
          "agents", "admin", None, Accepted, status=202, errors=(404, *_ADMIN)),
]  # fmt: skip
