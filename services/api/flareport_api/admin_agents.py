"""Admin routes for agent keys and agents: create/list/revoke/roll keys; list, inspect, enrol, rename,
decommission and remove agents.

Each handler parses its request, calls the use case (``usecases.keys``, ``usecases.agents``; the web UI's forms
call the same ones) and answers with JSON. Everything that changes Cloudflare or an agent goes out as an intent on
the intents stream; the reconciler acts on it.
"""

from __future__ import annotations

from aiohttp import web

from flareport_api import validation
from flareport_api.clientaddr import master_url
from flareport_api.errors import json_response, query_choice, read_body
from flareport_api.schemas import (
    Accepted,
    AgentDetail,
    AgentList,
    AgentView,
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
from flareport_api.state import QueryParam, Route, context
from flareport_api.usecases import agents, keys
from flareport_api.usecases.agents import STATUSES


def _key_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["key_id"], "key_id")


def _agent_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["agent_id"], "agent_id")


def _accepted(accepted: Accepted) -> web.Response:
    return json_response(accepted, status=202)


# ---- keys ----------------------------------------------------------------------------------------------------


async def create_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, KeyCreateRequest)
    key, stored = await keys.create(ctx, body.label)
    env, compose = keys.onboarding(master_url(request), key, stored.label)
    return json_response(KeyCreated(key=key, info=stored.info(), env=env, compose=compose), status=201)


async def list_keys(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(KeyList(keys=tuple(k.info() for k in await ctx.store.all())))


async def get_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response((await keys.find(ctx, _key_id(request))).info())


async def revoke_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    stored = await keys.find(ctx, _key_id(request))
    return json_response((await keys.revoke(ctx, stored)).info())


async def roll_key(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    stored = await keys.find(ctx, _key_id(request))
    return json_response(await keys.roll(ctx, stored))


# ---- agents --------------------------------------------------------------------------------------------------


async def list_agents(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    status = query_choice(request, "status", STATUSES)
    found = sorted((await agents.known(ctx)).values(), key=lambda a: a.agent_id)
    if status is not None:
        found = [a for a in found if a.status == status]
    return json_response(AgentList(agents=tuple(view(a, AgentView) for a in found)))


async def agent_detail(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await agents.detail(ctx, _agent_id(request)))


async def enroll(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    body = await read_body(request, EnrollRequest)
    return _accepted(await agents.enroll(ctx, agent_id, body))


async def set_policy(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    body = await read_body(request, PolicyRequest)
    return _accepted(await agents.change_policy(ctx, agent_id, body))


async def rename(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    body = await read_body(request, RenameRequest)
    return _accepted(await agents.rename(ctx, agent_id, body.display_name))


async def decommission(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return _accepted(await agents.decommission(ctx, _agent_id(request)))


async def remove(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    agent_id = _agent_id(request)
    force = query_choice(request, "force", ("true", "false")) == "true"
    return _accepted(await agents.remove(ctx, agent_id, force=force))


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
