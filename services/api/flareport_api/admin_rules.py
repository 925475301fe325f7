"""Admin routes for rules: the read model's published hostnames (with filters), manual rules and access groups.

Manual rules and access groups are the admin's declarations. The API keeps the latest declaration in its own
hash (so they can be listed and edited before the reconciler has acted) and writes the matching intent in the
same MULTI, so the stored declaration and the intent cannot disagree. What Cloudflare actually got shows up
in the rules read model, written by the reconciler.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web
from redis.exceptions import WatchError

from flareport_api import readstore, validation
from flareport_api.errors import ApiError, invalid, json_response, not_found, query_choice, read_body
from flareport_api.schemas import (
    Accepted,
    AccessGroup,
    AccessGroupCreateRequest,
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
from flareport_common import readversion
from flareport_common.access import AUTHENTICATED, DEFAULT_SESSION, LEGACY_BYPASS, PUBLIC_BYPASS
from flareport_common.messages.base import Message, new_id, utcnow
from flareport_common.messages.intents import (
    AccessGroupDeleted,
    AccessGroupUpserted,
    ManualRuleDeleted,
    ManualRuleUpserted,
)
from flareport_common.replies import text
from flareport_common.streams.codec import encode
from flareport_common.validate import ACCESS_RULE_TYPES

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
    readversion.bump(pipe, ctx.keys)  # the manual rules and access groups pages show these hashes
    pipe.xadd(ctx.keys.intents, encode(intent))  # type: ignore[arg-type]  # no MAXLEN: the reconciler trims
    results = await pipe.execute()
    return text(results[-1])


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


# ---- access groups ------------------------------------------------------------------------------------------

# The id ``access.group=<id>`` labels reference: chosen by the admin (or derived from the name). Lower case only, so
# a label can never name a group that differs from another by case alone.
GROUP_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
_SLUG_NOISE = re.compile(r"[^a-z0-9_.-]+")
_CREATE_TRIES = 20  # optimistic retries of one create while other groups change (each failure means one succeeded)

# DockFlare's two built-in groups (docs/dev/dockflare-access-spec.md, 3.3): always listed, never stored, never
# changed through the API; the reconciler resolves them (flareport_common.access.system_group).
SYSTEM_ACCESS_GROUPS: dict[str, AccessGroup] = {
    PUBLIC_BYPASS: AccessGroup(
        group_id=PUBLIC_BYPASS,
        name="Public (bypass for everyone)",
        decision="bypass",
        include=({"everyone": {}},),
        session_duration=DEFAULT_SESSION,
        system=True,
        description=(
            "Built in: makes a service public. Cloudflare Access lets everyone through without a login (a bypass "
            "policy including everyone). Labels: access.group=public-default-bypass (or the old id bypass), or "
            "access.policy=bypass. It cannot be combined with other groups."
        ),
    ),
    AUTHENTICATED: AccessGroup(
        group_id=AUTHENTICATED,
        name="Account owner (One-time PIN)",
        decision="allow",
        session_duration=DEFAULT_SESSION,
        system=True,
        description=(
            "Built in: allows a login by One-time PIN and requires the Cloudflare account owner's email (include: "
            "the One-time PIN login method; require: the owner's email, from FLAREPORT_ACCESS_OWNER_EMAIL or found "
            "through the Cloudflare API). Both are resolved by the reconciler; while either is unknown, a hostname "
            "using this group is not published. Labels: access.group=authenticated-default, or "
            "access.policy=authenticate."
        ),
    ),
}


def chosen_group_id(value: str) -> str:
    """A group id an admin chose (422 naming ``group_id`` otherwise); system and reserved ids are 409."""
    if not GROUP_ID.match(value):
        raise invalid(
            "group_id",
            f"group_id {value[:80]!r} must be 1-64 characters of lowercase letters, digits, '-', '_', '.', starting "
            "with a letter or digit (labels reference it as access.group=<id>)",
        )
    refuse_system_group(value, "created")
    if value == LEGACY_BYPASS:
        raise ApiError(
            409,
            "reserved_group_id",
            f"group id {LEGACY_BYPASS!r} is reserved: labels naming it get the system group {PUBLIC_BYPASS!r} "
            "(DockFlare's old id for it); choose another id",
            field="group_id",
        )
    return value


def refuse_system_group(group_id: str, action: str) -> None:
    """409 for a system group's id: it is built in and cannot be ``action`` (created, replaced, deleted)."""
    if group_id in SYSTEM_ACCESS_GROUPS:
        raise ApiError(
            409,
            "system_group",
            f"access group {group_id!r} is a system group: it is built in and cannot be {action}",
            field="group_id",
        )


def slug(name: str) -> str:
    """The id a group gets from its name when none is chosen (``Ops Team`` -> ``ops-team``); '' if nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return _SLUG_NOISE.sub("-", ascii_name).strip("-_.")[:64].rstrip("-_.")


def _access_rules(rules: tuple[dict[str, Any], ...], field: str) -> None:
    """Each entry a Cloudflare Access rule object: exactly one known rule type, with an object as its value."""
    for index, item in enumerate(rules):
        where = f"{field}[{index}]"
        if len(item) != 1:
            raise invalid(
                where, 'an Access rule is an object with exactly one rule type, e.g. {"email": {"email": "a@b.c"}}'
            )
        kind, value = next(iter(item.items()))
        if kind not in ACCESS_RULE_TYPES:
            raise invalid(
                where, f"unknown Access rule type {kind[:64]!r} (known: {', '.join(sorted(ACCESS_RULE_TYPES))})"
            )
        if not isinstance(value, dict):
            raise invalid(f"{where}.{kind}", 'an Access rule\'s value must be an object, e.g. {"everyone": {}}')


def _group_fields(body: AccessGroupRequest) -> dict[str, Any]:
    """The group's definition from a request, checked: name, session, a non-empty include and valid rule objects."""
    fields = {name: getattr(body, name) for name in AccessGroupRequest.__struct_fields__}
    fields["name"] = validation.text(body.name, "name", maximum=100)
    if body.session_duration is not None:
        validation.duration(body.session_duration, "session_duration")
    if not body.include:
        raise invalid(
            "include",
            'include needs at least one Access rule, e.g. [{"email": {"email": "a@example.com"}}] (a group without '
            "one is refused rather than read as everyone)",
        )
    for name in ("include", "exclude", "require"):
        _access_rules(getattr(body, name), name)
    return fields


async def _stored_groups(ctx: ApiContext) -> dict[str, AccessGroup]:
    raw = await ctx.redis.hgetall(ctx.keys.api_access_groups)
    groups = (msgspec.json.decode(v, type=AccessGroup) for v in raw.values())
    return {g.group_id: g for g in groups if g.group_id not in SYSTEM_ACCESS_GROUPS}


async def all_groups(ctx: ApiContext) -> list[AccessGroup]:
    """The system groups first, then the admin's groups by name (the API's list and the web UI's page)."""
    stored = sorted((await _stored_groups(ctx)).values(), key=lambda g: (g.name, g.group_id))
    return [*SYSTEM_ACCESS_GROUPS.values(), *stored]


async def list_groups(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(AccessGroupList(groups=tuple(await all_groups(ctx))))


async def _create_stored(ctx: ApiContext, group_id: str, value: bytes, intent: Message) -> bool:
    """Store a new group and its intent in one transaction, only if the id is free (False when it is taken)."""
    key = ctx.keys.api_access_groups
    async with ctx.redis.pipeline(transaction=True) as pipe:
        for _ in range(_CREATE_TRIES):
            try:
                await pipe.watch(key)
                if await pipe.hexists(key, group_id):
                    await pipe.unwatch()  # type: ignore[no-untyped-call]
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(key, group_id, value)
                readversion.bump(pipe, ctx.keys)
                pipe.xadd(ctx.keys.intents, encode(intent))  # type: ignore[arg-type]  # no MAXLEN: the reconciler trims
                await pipe.execute()
                return True
            except WatchError:
                continue  # another group changed meanwhile: look again
    raise ApiError(409, "busy", "access groups are changing too fast to add this one; try again")


async def save_group(ctx: ApiContext, group_id: str | None, body: AccessGroupRequest, *, creating: bool) -> AccessGroup:
    """Validate and store an access group with its intent (shared by this route and the web UI's form).

    Creating: ``group_id`` is the admin's chosen id (409 when taken), or None to derive it from the name (a
    generated ``ag_…`` id when that is empty or taken). Replacing: the existing group's id (404 otherwise)."""
    fields = _group_fields(body)
    if creating:
        chosen = None if group_id is None else chosen_group_id(group_id)
        derived = slug(fields["name"])
        candidates = [chosen] if chosen is not None else []
        if chosen is None and GROUP_ID.match(derived) and derived not in (*SYSTEM_ACCESS_GROUPS, LEGACY_BYPASS):
            candidates.append(derived)
        if chosen is None:
            candidates.append("ag_" + new_id()[:16])
        for candidate in candidates:
            stored = AccessGroup(group_id=candidate, updated_at=utcnow(), **fields)
            intent = AccessGroupUpserted(group_id=candidate, **fields)
            if await _create_stored(ctx, candidate, _encoder.encode(stored), intent):
                return stored
        raise ApiError(409, "duplicate_group", f"access group {group_id!r} already exists", field="group_id")
    assert group_id is not None
    refuse_system_group(group_id, "replaced")
    if not await ctx.redis.hexists(ctx.keys.api_access_groups, group_id):
        raise not_found("access group", group_id)
    stored = AccessGroup(group_id=group_id, updated_at=utcnow(), **fields)
    intent = AccessGroupUpserted(group_id=group_id, **fields)
    await _store_with_intent(ctx, ctx.keys.api_access_groups, group_id, _encoder.encode(stored), intent)
    return stored


async def delete_stored_group(ctx: ApiContext, group_id: str) -> Accepted:
    """Remove an admin's group and tell the reconciler (409 for a system group, 404 for an unknown one)."""
    refuse_system_group(group_id, "deleted")
    if not await ctx.redis.hexists(ctx.keys.api_access_groups, group_id):
        raise not_found("access group", group_id)
    intent = AccessGroupDeleted(group_id=group_id)
    stream_id = await _store_with_intent(ctx, ctx.keys.api_access_groups, group_id, None, intent)
    return Accepted(intent_id=intent.id, stream_id=stream_id)


async def create_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, AccessGroupCreateRequest)
    stored = await save_group(ctx, body.group_id, body, creating=True)
    return json_response(stored, status=201)


async def update_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    group_id = validation.path_id(request.match_info["group_id"], "group_id")
    refuse_system_group(group_id, "replaced")
    body = await read_body(request, AccessGroupRequest)
    return json_response(await save_group(ctx, group_id, body, creating=False))


async def get_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    if (system := SYSTEM_ACCESS_GROUPS.get(request.match_info["group_id"])) is not None:
        await ctx.auth.admin(request)
        return json_response(system)
    return await _get_one(request, "group_id", "access group", ctx.keys.api_access_groups, AccessGroup)


async def delete_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    group_id = validation.path_id(request.match_info["group_id"], "group_id")
    return json_response(await delete_stored_group(ctx, group_id), status=202)


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
          AccessGroupCreateRequest, AccessGroup, status=201, errors=(409, *_WRITE)),
    Route("GET", "/api/v1/access-groups/{group_id}", get_group, "One access group", "access groups", "admin",
          None, AccessGroup, errors=(404, *_ADMIN)),
    Route("PUT", "/api/v1/access-groups/{group_id}", update_group, "Replace an access group", "access groups",
          "admin", AccessGroupRequest, AccessGroup, errors=(404, 409, *_WRITE)),
    Route("DELETE", "/api/v1/access-groups/{group_id}", delete_group, "Delete an access group", "access groups",
          "admin", None, Accepted, status=202, errors=(404, 409, *_ADMIN)),
]  # fmt: skip
