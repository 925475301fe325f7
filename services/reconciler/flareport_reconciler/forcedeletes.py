"""An admin's forced deletion of a rule in ``pending_deletion`` (``rule_force_deleted`` intent): what the grace
period would delete later is deleted now.

The work is the grace deletion's own (``delete_due.lua`` through ``Upkeep.delete_due``), called with a time past
every due date: each stopped container's claim on ``hostname + path`` is deleted only if its pending-deletion
member is still there. That member is what a restart of the container removes, so a container that runs again
keeps its rule, as it would at the end of the grace period, and a deletion that the background loop or another
replica already made is not made twice (the script's ZREM decides who does it). The hostname is then refreshed
like after any grace deletion: its documents are rewritten and its targets get jobs (DNS record, tunnel ingress,
Access app removed when no other claim keeps them).

Running (non-stopped) containers' claims and manual rules are never touched: they have no pending member. The
API accepts the request only for a rule the read model shows in ``pending_deletion``; this side does not trust
that alone (the state may have changed since) and relies on the member.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog
from prometheus_client import Counter

from flareport_common.messages.intents import RuleForceDeleted
from flareport_reconciler.claims import read_claims
from flareport_reconciler.resolution import Claim
from flareport_reconciler.spine import Spine
from flareport_reconciler.upkeep import Upkeep

log = structlog.get_logger("flareport.reconciler.forcedeletes")

FORCED = Counter(
    "flareport_reconciler_forced_deletions_total", "Rules in pending_deletion an admin had deleted at once."
)
# A time after every due date (seconds; year ~33,600): the claim's own due time no longer matters, its member does.
PAST_EVERY_DUE_DATE = 1e12


def stopped_claims(claims: Iterable[Claim], path: str | None) -> list[str]:
    """The ids of the claims on ``path`` whose container is stopped (waiting for the end of its grace period)."""
    return [c.claim_id for c in claims if (c.rule.path or None) == (path or None) and c.delete_at is not None]


class ForceDeletions:
    def __init__(self, spine: Spine) -> None:
        self.r = spine
        self.store = Upkeep(spine.redis, spine.keys)

    async def rule_force_deleted(self, message: RuleForceDeleted) -> None:
        hostname = message.hostname
        [held] = await read_claims(self.r.redis, self.r.keys, [hostname])
        marks: dict[str, int] = {}
        deleted = 0
        for claim_id in stopped_claims(held.claims, message.path):
            mark = int(time.time() * 1000)
            if await self.store.delete_due(hostname, claim_id, PAST_EVERY_DUE_DATE, mark):
                marks[hostname] = mark
                deleted += 1
        FORCED.inc(deleted)
        log.info(
            "reconciler.rule_force_deleted",
            rule=hostname + (message.path or ""),
            requested_by=message.requested_by,
            claims_deleted=deleted,
        )
        await self.r.converge(marks)
