"""An admin's take-over of the foreign DNS records on one published hostname (``flareport rules adopt``).

A rule whose name already holds records Flareport did not make is a ``conflict`` and nothing on the name is
touched. The admin who knows those records are stale (or DockFlare's, in a shape the automatic adoption does not
recognise) grants a one-time permission for that hostname: the dns-worker reads the grant only when its plan meets
a conflict there, takes the name over as a manual rule's ``adopt`` would (one CNAME reused in place, other
colliding records deleted), and removes the grant once done. A reconcile of the rule's zone is requested at once so
it happens now, not at the next drift check. Agents can never grant (admin route only).
"""

from __future__ import annotations

import json
import time

from flareport_api import readstore
from flareport_api.apierror import ApiError, not_found
from flareport_api.schemas import Accepted
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common.messages.intents import ReconcileRequested


async def adopt(ctx: ApiContext, hostname: str) -> Accepted:
    """Grant the take-over of ``hostname`` (already validated) and have its zone reconciled with a fresh read."""
    rules = [r for r in await readstore.rules(ctx.redis, ctx.keys) if r.hostname == hostname]
    if not rules:
        raise not_found("hostname", hostname)
    zone = next((r.zone_name for r in rules if r.zone_name), None)
    if zone is None:
        raise ApiError(
            409, "conflict", "no zone is known for this hostname yet: nothing to take over there", field="hostname"
        )
    await ctx.redis.hset(ctx.keys.adopt_grants, hostname, json.dumps({"granted_at": time.time()}))
    # Planned again at once (forced); the dns-worker syncs the zone again although the version is the same, because
    # the grant covers a conflict its last sync left.
    return await intents.send(ctx, ReconcileRequested(scope=f"zone:{zone}", verify=False))
