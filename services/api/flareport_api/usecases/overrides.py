"""An admin's override of a container rule, and its revert to labels (``flareport rules override`` / ``revert``,
the web UI's rule page).

DockFlare marks a rule ``rule_ui_override`` (and its Access ``access_policy_ui_override``) and then skips the
container's labels for it; Flareport keeps the override as the admin's own declaration of selected fields (service,
origin options, Access) of one hostname + path, applied over whatever the labels say, so the rest of the rule still
follows the container and reverting is dropping the override. Only the admin API and the web UI write it (the
declaration and its intent in one transaction, like manual rules); agents never reach these use cases, and nothing
in an agent's events can name it. A manual rule is the admin's already and is edited directly instead.
"""

from __future__ import annotations

import msgspec

from flareport_api import validation
from flareport_api.apierror import ApiError, not_found
from flareport_api.schemas import Accepted, AuditEntry, RuleOverrideRecord, RuleOverrideRequest
from flareport_api.state import ApiContext
from flareport_api.usecases import audit
from flareport_common.messages.base import utcnow
from flareport_common.messages.intents import RuleOverrideCleared, RuleOverrideSet
from flareport_common.messages.rules import AccessSpec, OriginOptions, RuleOverride
from flareport_common.readmodel import RuleRecord

_encoder = msgspec.json.Encoder()


def checked(body: RuleOverrideRequest) -> RuleOverride:
    """The override with every field checked as a manual rule's is (422 naming it); at least one field."""
    if body.path is not None:
        validation.path(body.path, "path")
    if body.service is not None:
        validation.service_url(body.service, "service")
    origin = None if body.origin is None else msgspec.convert(msgspec.to_builtins(body.origin), OriginOptions)
    if origin is not None:
        validation.origin(origin, "origin")
    access = None if body.access is None else msgspec.convert(msgspec.to_builtins(body.access), AccessSpec)
    if access is not None:
        validation.access(access, "access")
    override = RuleOverride(service=body.service, origin=origin, access=access)
    if not override.fields():
        raise ApiError(422, "invalid_body", "an override sets at least one of service, origin, access", field="$")
    return override


async def _container_rule(ctx: ApiContext, key: str) -> RuleRecord:
    raw = await ctx.redis.get(ctx.keys.rule(key))
    if raw is None:
        raise not_found("rule", key)
    rule = msgspec.json.decode(raw, type=RuleRecord)
    if rule.source == "manual":
        raise ApiError(
            409, "manual_rule", f"rule {key} is the manual rule {rule.manual_rule_id}: edit it instead", field="path"
        )
    return rule


async def stored(ctx: ApiContext, key: str) -> RuleOverrideRecord | None:
    raw = await ctx.redis.hget(ctx.keys.api_rule_overrides, key)
    return None if raw is None else msgspec.json.decode(raw, type=RuleOverrideRecord)


async def put(ctx: ApiContext, hostname: str, body: RuleOverrideRequest, actor: str) -> Accepted:
    """Override the container rule ``hostname + body.path`` (hostname already validated); 404 when no rule has
    that key, 409 for a manual rule. Recorded in the audit list as ``actor``'s."""
    override = checked(body)
    key = hostname + (body.path or "")
    await _container_rule(ctx, key)
    now = utcnow()
    record = RuleOverrideRecord(hostname=hostname, path=body.path, override=override, updated_at=now)
    intent = RuleOverrideSet(hostname=hostname, path=body.path, override=override)
    entry = AuditEntry(at=now, actor=actor, action="rule_override_set", target=key, intent_id=intent.id)
    declaration = audit.Declaration(ctx.keys.api_rule_overrides, key, _encoder.encode(record))
    return await audit.with_intent(ctx, entry, intent, declaration)


async def revert(ctx: ApiContext, hostname: str, path: str | None, actor: str) -> Accepted:
    """Back to what the labels say; 404 when the rule has no override. Recorded in the audit list."""
    if path is not None:
        validation.path(path, "path")
    key = hostname + (path or "")
    if await stored(ctx, key) is None:
        raise not_found("rule override", key)
    intent = RuleOverrideCleared(hostname=hostname, path=path)
    entry = AuditEntry(at=utcnow(), actor=actor, action="rule_override_cleared", target=key, intent_id=intent.id)
    return await audit.with_intent(ctx, entry, intent, audit.Declaration(ctx.keys.api_rule_overrides, key, None))
