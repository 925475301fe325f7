"""Admin routes for rules: the read model's published hostnames (with filters), manual rules and access groups.

Manual rules and access groups are the admin's declarations. The API keeps the latest declaration in its own
hash (so they can be listed and edited before the reconciler has acted) and writes the matching intent in the
same MULTI, so the stored declaration and the intent cannot disagree. What Cloudflare actually got shows up
in the rules read model, written by the reconciler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from flareport_api import readstore, validation
from flareport_api.errors import ApiError, json_response, not_found, query_choice, read_body
from flareport_api.keystore import bump_version
from flareport_api.schemas import (
    Accepted,
    AccessGroup,
    AccessGroupList,
    AccessGroupRequest,
    ManualRule,
    ManualRuleList,
    ManualRuleRequest,
    RuleList,
    RuleView,
    view,
)
from flareport_api.state import ApiContext, QueryParam, Route, context
from flareport_common.messages.base import Message, new_id, utcnow
from flareport_common.messages.intents import (
    AccessGroupDeleted,
    AccessGroupUpserted,
    ManualRuleDeleted,
    ManualRuleUpserted,
)
from flareport_common.streams.codec import encode

RULE_STATUSES = ("pending", "active", "error", "pending_deletion", "conflict")
_encoder = msgspec.json.Encoder()


# ---- read model ----------------------------------------------------------------------------------------------


async def list_rules(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    status = query_choice(request, "status", RULE_STATUSES)
    source = query_choice(request, "source", ("container", "manual"))
    agent_id = request.query.get("agent_id") or None
    if agent_id is not None:
        validation.path_id(agent_id, "agent_id")
    zone = request.query.get("zone") or None
    if zone is not None:
        zone = validation.hostname(zone, "zone", wildcard=False)
    contains = (request.query.get("q") or "").lower()
    rules = [
        r
        for r in await readstore.rules(ctx.redis, ctx.keys)
        if (status is None or r.status == status)
        and (source is None or r.source == source)
        and (agent_id is None or r.agent_id == agent_id)
        and (zone is None or r.zone_name == zone)
        and contains in r.hostname
    ]
    rules.sort(key=lambda r: r.key)
    return json_response(RuleList(rules=tuple(view(r, RuleView) for r in rules)))


async def rule_detail(request: web.Request) -> web.StreamResponse:
    """Every rule of one hostname (one per path)."""
    ctx = context(request)
    await ctx.auth.admin(request)
    host = validation.hostname(request.match_info["hostname"], "hostname")
    rules = sorted((r for r in await readstore.rules(ctx.redis, ctx.keys) if r.hostname == host), key=lambda r: r.key)
    if not rules:
        raise not_found("hostname", host)
    return json_response(RuleList(rules=tuple(view(r, RuleView) for r in rules)))


# ---- manual rules --------------------------------------------------------------------------------------------


async def _store_with_intent(ctx: ApiContext, hash_key: str, field: str, value: bytes | None, intent: Message) -> str:
    pipe = ctx.redis.pipeline(transaction=True)
    if value is None:
        pipe.hdel(hash_key, field)
    else:
        pipe.hset(hash_key, field, value)
    bump_version(pipe, ctx.keys)  # the manual rules and access groups pages show these hashes
    pipe.xadd(ctx.keys.intents, encode(intent))  # type: ignore[arg-type]  # no MAXLEN: the reconciler trims
    results = await pipe.execute()
    entry = results[-1]
    return entry.decode() if isinstance(entry, bytes) else str(entry)


async def _manual_rules(ctx: ApiContext) -> dict[str, ManualRule]:
    raw = await ctx.redis.hgetall(ctx.keys.api_manual_rules)
    rules = (msgspec.json.decode(v, type=ManualRule) for v in raw.values())
    return {r.rule_id: r for r in rules}


async def list_manual(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    rules = sorted((await _manual_rules(ctx)).values(), key=lambda r: r.rule.key)
    return json_response(ManualRuleList(rules=tuple(rules)))


async def _upsert_manual(request: web.Request, rule_id: str, *, creating: bool) -> web.StreamResponse:
    body = await read_body(request, ManualRuleRequest)
    stored = await save_manual(context(request), rule_id, body, creating=creating)
    return json_response(stored, status=201 if creating else 200)


async def save_manual(ctx: ApiContext, rule_id: str, body: ManualRuleRequest, *, creating: bool) -> ManualRule:
    """Validate and store a manual rule with its intent (shared by this route and the web UI's form)."""
    rule = validation.rule(body.rule.to_rule())
    if body.agent_id is not None:
        validation.path_id(body.agent_id, "agent_id")
    if body.tunnel_id is not None:
        validation.path_id(body.tunnel_id, "tunnel_id")
    existing = await _manual_rules(ctx)
    if not creating and rule_id not in existing:
        raise not_found("manual rule", rule_id)
    for other in existing.values():
        if other.rule_id != rule_id and other.rule.key == rule.key:
            raise ApiError(409, "duplicate_rule", f"manual rule {other.rule_id} already publishes {rule.key}")
    stored = ManualRule(
        rule_id=rule_id, rule=rule, agent_id=body.agent_id, tunnel_id=body.tunnel_id, updated_at=utcnow()
    )
    intent = ManualRuleUpserted(rule_id=rule_id, rule=rule, agent_id=body.agent_id, tunnel_id=body.tunnel_id)
    await _store_with_intent(ctx, ctx.keys.api_manual_rules, rule_id, _encoder.encode(stored), intent)
    return stored


async def create_manual(request: web.Request) -> web.StreamResponse:
    await context(request).auth.admin(request)
    return await _upsert_manual(request, "mr_" + new_id()[:16], creating=True)


async def update_manual(request: web.Request) -> web.StreamResponse:
    await context(request).auth.admin(request)
    rule_id = validation.path_id(request.match_info["rule_id"], "rule_id")
    return await _upsert_manual(request, rule_id, creating=False)


async def _get_one(request: web.Request, param: str, what: str, store: str, kind: type[Any]) -> web.StreamResponse:
    """One stored manual rule or access group (``store``: its hash), or 404 naming it."""
    ctx = context(request)
    await ctx.auth.admin(request)
    item_id = validation.path_id(request.match_info[param], param)
    raw = await ctx.redis.hget(store, item_id)
    if raw is None:
        raise not_found(what, item_id)
    return json_response(msgspec.json.decode(raw, type=kind))


async def _delete_one(
    request: web.Request, param: str, what: str, store: str, intent_type: Callable[..., Message]
) -> web.StreamResponse:
    """Remove a stored manual rule or access group and tell the reconciler, in one transaction (202).
    ``param`` names both the path parameter and the intent's id field (``rule_id``, ``group_id``)."""
    ctx = context(request)
    await ctx.auth.admin(request)
    item_id = validation.path_id(request.match_info[param], param)
    if not await ctx.redis.hexists(store, item_id):
        raise not_found(what, item_id)
    intent = intent_type(**{param: item_id})
    stream_id = await _store_with_intent(ctx, store, item_id, None, intent)
    return json_response(Accepted(intent_id=intent.id, stream_id=stream_id), status=202)


async def get_manual(request: web.Request) -> web.StreamResponse:
    keys = context(request).keys
    return await _get_one(request, "rule_id", "manual rule", keys.api_manual_rules, ManualRule)


async def delete_manual(request: web.Request) -> web.StreamResponse:
    keys = context(request).keys
    return await _delete_one(request, "rule_id", "manual rule", keys.api_manual_rules, ManualRuleDeleted)


# ---- access groups -------------------------------------------------------------------------------------------


async def list_groups(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    raw = await ctx.redis.hgetall(ctx.keys.api_access_groups)
    groups = sorted((msgspec.json.decode(v, type=AccessGroup) for v in raw.values()), key=lambda g: g.name)
    return json_response(AccessGroupList(groups=tuple(groups)))


async def _upsert_group(request: web.Request, group_id: str, *, creating: bool) -> web.StreamResponse:
    body = await read_body(request, AccessGroupRequest)
    stored = await save_group(context(request), group_id, body, creating=creating)
    return json_response(stored, status=201 if creating else 200)


async def save_group(ctx: ApiContext, group_id: str, body: AccessGroupRequest, *, creating: bool) -> AccessGroup:
    """Validate and store an access group with its intent (shared by this route and the web UI's form)."""
    name = validation.text(body.name, "name", maximum=100)
    if body.session_duration is not None:
        validation.duration(body.session_duration, "session_duration")
    if not creating and not await ctx.redis.hexists(ctx.keys.api_access_groups, group_id):
        raise not_found("access group", group_id)
    fields = msgspec.structs.asdict(body)
    fields["name"] = name
    stored = AccessGroup(group_id=group_id, updated_at=utcnow(), **fields)
    intent = AccessGroupUpserted(group_id=group_id, **fields)
    await _store_with_intent(ctx, ctx.keys.api_access_groups, group_id, _encoder.encode(stored), intent)
    return stored


async def create_group(request: web.Request) -> web.StreamResponse:
    await context(request).auth.admin(request)
    return await _upsert_group(request, "ag_" + new_id()[:16], creating=True)


async def update_group(request: web.Request) -> web.StreamResponse:
    await context(request).auth.admin(request)
    group_id = validation.path_id(request.match_info["group_id"], "group_id")
    return await _upsert_group(request, group_id, creating=False)


async def get_group(request: web.Request) -> web.StreamResponse:
    keys = context(request).keys
    return await _get_one(request, "group_id", "access group", keys.api_access_groups, AccessGroup)


async def delete_group(request: web.Request) -> web.StreamResponse:
    keys = context(request).keys
    return await _delete_one(request, "group_id", "access group", keys.api_access_groups, AccessGroupDeleted)


_ADMIN = (401, 422, 429)
_WRITE = (400, 413, *_ADMIN)
_FILTERS = (
    QueryParam("status", {"type": "string", "enum": list(RULE_STATUSES)}, "only rules with this status"),
    QueryParam("source", {"type": "string", "enum": ["container", "manual"]}, "only rules from this source"),
    QueryParam("agent_id", {"type": "string"}, "only rules published by this agent"),
    QueryParam("zone", {"type": "string"}, "only rules in this zone (a zone name: example.com)"),
    QueryParam("q", {"type": "string"}, "only hostnames containing this text"),
)
ROUTES = [
    Route("GET", "/api/v1/rules", list_rules, "Published rules with their Cloudflare state", "rules", "admin",
          None, RuleList, query=_FILTERS, errors=_ADMIN),
    Route("GET", "/api/v1/rules/{hostname}", rule_detail, "The rules of one hostname", "rules", "admin",
          None, RuleList, errors=(404, *_ADMIN)),
    Route("GET", "/api/v1/manual-rules", list_manual, "Manual rules", "manual rules", "admin", None, ManualRuleList,
          errors=(401, 429)),
    Route("POST", "/api/v1/manual-rules", create_manual, "Create a manual rule", "manual rules", "admin",
          ManualRuleRequest, ManualRule, status=201, errors=(409, *_WRITE)),
    Route("GET", "/api/v1/manual-rules/{rule_id}", get_manual, "One manual rule", "manual rules", "admin",
          None, ManualRule, errors=(404, *_ADMIN)),
    Route("PUT", "/api/v1/manual-rules/{rule_id}", update_manual, "Replace a manual rule", "manual rules", "admin",
          ManualRuleRequest, ManualRule, errors=(404, 409, *_WRITE)),
    Route("DELETE", "/api/v1/manual-rules/{rule_id}", delete_manual, "Delete a manual rule", "manual rules",
          "admin", None, Accepted, status=202, errors=(404, *_ADMIN)),
    Route("GET", "/api/v1/access-groups", list_groups, "Access groups", "access groups", "admin", None,
          AccessGroupList, errors=(401, 429)),
    Route("POST", "/api/v1/access-groups", create_group, "Create an access group", "access groups", "admin",
          AccessGroupRequest, AccessGroup, status=201, errors=_WRITE),
    Route("GET", "/api/v1/access-groups/{group_id}", get_group, "One access group", "access groups", "admin",
          None, AccessGroup, errors=(404, *_ADMIN)),
    Route("PUT", "/api/v1/access-groups/{group_id}", update_group, "Replace an access group", "access groups",
          "admin", AccessGroupRequest, AccessGroup, errors=(404, *_WRITE)),
    Route("DELETE", "/api/v1/access-groups/{group_id}", delete_group, "Delete an access group", "access groups",
          "admin", None, Accepted, status=202, errors=(404, *_ADMIN)),
]  # fmt: skip
