"""Admin routes for rules: the read model's published hostnames (with filters), manual rules and access groups.

Manual rules and access groups are the admin's declarations (``usecases.manualrules``, ``usecases.accessgroups``,
also called by the web UI's forms): the API keeps the latest declaration in its own hash and writes the matching
intent in the same MULTI. What Cloudflare actually got shows up in the rules read model, written by the reconciler.
"""

from __future__ import annotations

from aiohttp import web

from flareport_api import validation
from flareport_api.errors import json_response, query_choice, read_body
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
    RuleOverrideRequest,
    RulePathRequest,
    RuleView,
    view,
)
from flareport_api.state import QueryParam, Route, context
from flareport_api.usecases import accessgroups, adoption, audit, forcedelete, manualrules, overrides, rules
from flareport_api.usecases.rules import RULE_SOURCES, RULE_STATUSES

# ---- read model ----------------------------------------------------------------------------------------------


async def list_rules(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    status = query_choice(request, "status", RULE_STATUSES)
    source = query_choice(request, "source", RULE_SOURCES)
    agent_id = request.query.get("agent_id") or None
    if agent_id is not None:
        validation.path_id(agent_id, "agent_id")
    zone = request.query.get("zone") or None
    if zone is not None:
        zone = validation.hostname(zone, "zone", wildcard=False)
    contains = (request.query.get("q") or "").lower()
    found = await rules.matching(ctx, status=status, source=source, agent_id=agent_id, zone=zone, contains=contains)
    return json_response(RuleList(rules=tuple(view(r, RuleView) for r in found)))


async def rule_detail(request: web.Request) -> web.StreamResponse:
    """Every rule of one hostname (one per path)."""
    ctx = context(request)
    await ctx.auth.admin(request)
    host = validation.hostname(request.match_info["hostname"], "hostname")
    found = await rules.of_hostname(ctx, host)
    return json_response(RuleList(rules=tuple(view(r, RuleView) for r in found)))


async def adopt_rule(request: web.Request) -> web.StreamResponse:
    """Take over the foreign DNS records on one published hostname (a one-time grant; ``usecases.adoption``)."""
    ctx = context(request)
    await ctx.auth.admin(request)
    host = validation.hostname(request.match_info["hostname"], "hostname")
    return json_response(await adoption.adopt(ctx, host), status=202)


async def force_delete_rule(request: web.Request) -> web.StreamResponse:
    """Delete a rule in ``pending_deletion`` now instead of after its grace period (``usecases.forcedelete``)."""
    ctx = context(request)
    await ctx.auth.admin(request)
    host = validation.hostname(request.match_info["hostname"], "hostname")
    body = await read_body(request, RulePathRequest)
    return json_response(await forcedelete.force_delete(ctx, host, body.path, audit.API_ACTOR), status=202)


async def override_rule(request: web.Request) -> web.StreamResponse:
    """Override a container rule's service, origin options or Access (``usecases.overrides``)."""
    ctx = context(request)
    await ctx.auth.admin(request)
    host = validation.hostname(request.match_info["hostname"], "hostname")
    body = await read_body(request, RuleOverrideRequest)
    return json_response(await overrides.put(ctx, host, body, audit.API_ACTOR), status=202)


async def revert_rule(request: web.Request) -> web.StreamResponse:
    """Drop the admin's override: the rule is what its container's labels say again."""
    ctx = context(request)
    await ctx.auth.admin(request)
    host = validation.hostname(request.match_info["hostname"], "hostname")
    body = await read_body(request, RulePathRequest)
    return json_response(await overrides.revert(ctx, host, body.path, audit.API_ACTOR), status=202)


# ---- manual rules --------------------------------------------------------------------------------------------


def _rule_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["rule_id"], "rule_id")


async def list_manual(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    rules = sorted((await manualrules.stored(ctx)).values(), key=lambda r: r.rule.key)
    return json_response(ManualRuleList(rules=tuple(rules)))


async def create_manual(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, ManualRuleRequest)
    return json_response(await manualrules.save(ctx, manualrules.new_rule_id(), body, creating=True), status=201)


async def update_manual(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    rule_id = _rule_id(request)
    body = await read_body(request, ManualRuleRequest)
    return json_response(await manualrules.save(ctx, rule_id, body, creating=False))


async def get_manual(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await manualrules.get(ctx, _rule_id(request)))


async def delete_manual(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await manualrules.delete(ctx, _rule_id(request)), status=202)


# ---- access groups ------------------------------------------------------------------------------------------


def _group_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["group_id"], "group_id")


async def list_groups(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(AccessGroupList(groups=tuple(await accessgroups.every(ctx))))


async def create_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    body = await read_body(request, AccessGroupCreateRequest)
    return json_response(await accessgroups.save(ctx, body.group_id, body, creating=True), status=201)


async def update_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    group_id = _group_id(request)
    accessgroups.refuse_system_group(group_id, "replaced")  # before the body: a system group takes none
    body = await read_body(request, AccessGroupRequest)
    return json_response(await accessgroups.save(ctx, group_id, body, creating=False))


async def get_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await accessgroups.get(ctx, _group_id(request)))


async def delete_group(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await accessgroups.delete(ctx, _group_id(request)), status=202)


_ADMIN = (401, 422, 429)
_WRITE = (400, 413, *_ADMIN)
_FILTERS = (
    QueryParam("status", {"type": "string", "enum": list(RULE_STATUSES)}, "only rules with this status"),
    QueryParam("source", {"type": "string", "enum": list(RULE_SOURCES)}, "only rules from this source"),
    QueryParam("agent_id", {"type": "string"}, "only rules published by this agent"),
    QueryParam("zone", {"type": "string"}, "only rules in this zone (a zone name: example.com)"),
    QueryParam("q", {"type": "string"}, "only hostnames containing this text"),
)
ROUTES = [
    Route("GET", "/api/v1/rules", list_rules, "Published rules with their Cloudflare state", "rules", "admin",
          None, RuleList, query=_FILTERS, errors=_ADMIN),
    Route("GET", "/api/v1/rules/{hostname}", rule_detail, "The rules of one hostname", "rules", "admin",
          None, RuleList, errors=(404, *_ADMIN)),
    Route("POST", "/api/v1/rules/{hostname}/adopt", adopt_rule, "Take over the foreign DNS records on a hostname",
          "rules", "admin", None, Accepted, status=202, errors=(404, 409, *_ADMIN)),
    Route("POST", "/api/v1/rules/{hostname}/force-delete", force_delete_rule,
          "Delete a rule in pending_deletion now, without waiting for its grace period", "rules", "admin",
          RulePathRequest, Accepted, status=202, errors=(404, 409, *_WRITE)),
    Route("PUT", "/api/v1/rules/{hostname}/override", override_rule,
          "Override a container rule's service, origin options or Access over its labels", "rules", "admin",
          RuleOverrideRequest, Accepted, status=202, errors=(404, 409, *_WRITE)),
    Route("POST", "/api/v1/rules/{hostname}/revert", revert_rule,
          "Revert a container rule to its labels (drop the admin's override)", "rules", "admin",
          RulePathRequest, Accepted, status=202, errors=(404, *_WRITE)),
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
