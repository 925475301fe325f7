"""Published rules: what the reconciler made of every hostname, as the read model holds it (read only here).

The admin API lists them with filters, the web UI's dashboard with its own search; both read them through here.
"""

from __future__ import annotations

from flareport_api import readstore
from flareport_api.apierror import not_found
from flareport_api.state import ApiContext
from flareport_common.readmodel import RuleRecord

RULE_STATUSES = ("pending", "active", "error", "pending_deletion", "conflict")
RULE_SOURCES = ("container", "manual")


async def published(ctx: ApiContext) -> list[RuleRecord]:
    """Every rule, by key (hostname, then path)."""
    return sorted(await readstore.rules(ctx.redis, ctx.keys), key=lambda r: r.key)


async def matching(
    ctx: ApiContext,
    *,
    status: str | None = None,
    source: str | None = None,
    agent_id: str | None = None,
    zone: str | None = None,
    contains: str = "",
) -> list[RuleRecord]:
    """The rules with all the given properties (None: any), whose hostname contains ``contains``."""
    return [
        r
        for r in await published(ctx)
        if (status is None or r.status == status)
        and (source is None or r.source == source)
        and (agent_id is None or r.agent_id == agent_id)
        and (zone is None or r.zone_name == zone)
        and contains in r.hostname
    ]


async def of_hostname(ctx: ApiContext, hostname: str) -> list[RuleRecord]:
    """Every rule of one hostname (one per path), or 404."""
    rules = [r for r in await published(ctx) if r.hostname == hostname]
    if not rules:
        raise not_found("hostname", hostname)
    return rules
