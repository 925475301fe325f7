"""An admin's forced deletion of a rule in ``pending_deletion`` (``flareport rules delete HOSTNAME[/PATH] --force``).

A stopped container's rules stay published for their grace period, so a restart or a rolling update does not
unpublish them. When the admin knows the container is gone for good, waiting is pointless (or harmful: the name
keeps pointing at a dead origin). The reconciler deletes at once what the grace period would delete later (the
claims of stopped containers only): a rule whose container runs again meanwhile is left alone, exactly as at the
end of the grace period. Only a rule the read model shows in ``pending_deletion`` is accepted, so an admin cannot
use this to remove a live rule (that is the container's, or the manual rule's, to say).

Who asked is recorded in the admin audit list together with the intent, in one transaction: no forced deletion
without its audit entry, and no audit entry for a request that was refused.
"""

from __future__ import annotations

import msgspec

from flareport_api import validation
from flareport_api.apierror import ApiError, not_found
from flareport_api.schemas import Accepted, AuditEntry
from flareport_api.state import ApiContext
from flareport_api.usecases import audit
from flareport_common.messages.base import utcnow
from flareport_common.messages.intents import RuleForceDeleted
from flareport_common.readmodel import RuleRecord


async def force_delete(ctx: ApiContext, hostname: str, path: str | None, actor: str) -> Accepted:
    """Ask the reconciler to delete the rule ``hostname + path`` (hostname already validated) now; 404 when no
    rule has that key, 409 when it is not in ``pending_deletion``."""
    if path is not None:
        validation.path(path, "path")
    key = hostname + (path or "")
    raw = await ctx.redis.get(ctx.keys.rule(key))
    if raw is None:
        raise not_found("rule", key)
    rule = msgspec.json.decode(raw, type=RuleRecord)
    if rule.status != "pending_deletion":
        raise ApiError(
            409,
            "not_pending_deletion",
            f"rule {key} is {rule.status}, not pending_deletion: only a rule whose container stopped can be deleted "
            "before its grace period ends",
            field="path" if path else "hostname",
        )
    intent = RuleForceDeleted(hostname=hostname, path=path, requested_by=actor)
    entry = AuditEntry(at=utcnow(), actor=actor, action="rule_force_deleted", target=key, intent_id=intent.id)
    return await audit.with_intent(ctx, entry, intent)
