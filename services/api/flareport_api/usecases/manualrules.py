"""Manual rules: hostnames the admin publishes without a container (a service reachable from some agent or tunnel).

The API keeps the latest declaration of each rule in its own hash, written with its intent in one transaction
(``intents.store_with``); what Cloudflare actually got shows up in the rules read model, written by the reconciler.
A hostname (+ path) is published by at most one manual rule.
"""

from __future__ import annotations

import msgspec

from flareport_api import validation
from flareport_api.apierror import ApiError, not_found
from flareport_api.schemas import Accepted, ManualRule, ManualRuleRequest
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common.messages.base import new_id, utcnow
from flareport_common.messages.intents import ManualRuleDeleted, ManualRuleUpserted

_encoder = msgspec.json.Encoder()


def new_rule_id() -> str:
    return "mr_" + new_id()[:16]


async def stored(ctx: ApiContext) -> dict[str, ManualRule]:
    """Every manual rule, by id."""
    raw = await ctx.redis.hgetall(ctx.keys.api_manual_rules)
    rules = (msgspec.json.decode(v, type=ManualRule) for v in raw.values())
    return {r.rule_id: r for r in rules}


async def get(ctx: ApiContext, rule_id: str) -> ManualRule:
    raw = await ctx.redis.hget(ctx.keys.api_manual_rules, rule_id)
    if raw is None:
        raise not_found("manual rule", rule_id)
    return msgspec.json.decode(raw, type=ManualRule)


async def save(ctx: ApiContext, rule_id: str, body: ManualRuleRequest, *, creating: bool) -> ManualRule:
    """Validate and store a manual rule with its intent: a new one (``creating``), or a replacement of the
    existing ``rule_id`` (404 otherwise). 409 when another manual rule already publishes its hostname and path."""
    rule = validation.rule(body.rule.to_rule())
    if body.agent_id is not None:
        validation.path_id(body.agent_id, "agent_id")
    if body.tunnel_id is not None:
        validation.path_id(body.tunnel_id, "tunnel_id")
    existing = await stored(ctx)
    if not creating and rule_id not in existing:
        raise not_found("manual rule", rule_id)
    for other in existing.values():
        if other.rule_id != rule_id and other.rule.key == rule.key:
            raise ApiError(409, "duplicate_rule", f"manual rule {other.rule_id} already publishes {rule.key}")
    saved = ManualRule(
        rule_id=rule_id, rule=rule, agent_id=body.agent_id, tunnel_id=body.tunnel_id, updated_at=utcnow()
    )
    intent = ManualRuleUpserted(rule_id=rule_id, rule=rule, agent_id=body.agent_id, tunnel_id=body.tunnel_id)
    await intents.store_with(ctx, ctx.keys.api_manual_rules, rule_id, _encoder.encode(saved), intent)
    return saved


async def delete(ctx: ApiContext, rule_id: str) -> Accepted:
    """Remove a manual rule and tell the reconciler, in one transaction (404 for an unknown one)."""
    if not await ctx.redis.hexists(ctx.keys.api_manual_rules, rule_id):
        raise not_found("manual rule", rule_id)
    intent = ManualRuleDeleted(rule_id=rule_id)
    return await intents.store_with(ctx, ctx.keys.api_manual_rules, rule_id, None, intent)
