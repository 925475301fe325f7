"""Agents: list and find them, enrol one, change what it may publish, rename, decommission, remove.

An agent exists for the admin as soon as it registered with a key, even before the reconciler recorded it in the
read model: ``known`` and ``find`` fill that gap from the key store. Every change is an intent for the reconciler,
except what the API owns itself: removing an agent revokes its keys here, at once, so it cannot come back with
them.
"""

from __future__ import annotations

import msgspec

from flareport_api import longpoll, quotas, readstore, validation
from flareport_api.apierror import ApiError, invalid, not_found
from flareport_api.schemas import (
    Accepted,
    AgentDetail,
    AgentView,
    CommandView,
    EnrollRequest,
    PolicyRequest,
    view,
)
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common.messages.intents import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentPolicyChanged,
    AgentRemoved,
    AgentRenamed,
)
from flareport_common.policy import kinds_hint, unknown_kinds
from flareport_common.readmodel import AgentRecord

STATUSES = ("pending", "active", "offline", "decommissioning", "decommissioned", "removed")
# Removing forgets an agent; one that is still connected must be decommissioned first (or forced).
REMOVABLE = ("pending", "offline", "decommissioned", "removed")
# Entries of one allow-list: enough for any real fleet, bounded so a policy stays a small document.
MAX_NAMES = 256


async def known(ctx: ApiContext) -> dict[str, AgentRecord]:
    """The read model's agents, plus agents that registered but that the reconciler has not recorded yet."""
    found = {record.agent_id: record for record in await readstore.agents(ctx.redis, ctx.keys)}
    for stored in await ctx.store.all():
        if stored.agent_id and stored.agent_id not in found and stored.status == "active":
            found[stored.agent_id] = AgentRecord(
                agent_id=stored.agent_id,
                display_name=stored.display_name or stored.label,
                registered_at=stored.registered_at,
            )
    return found


async def find(ctx: ApiContext, agent_id: str) -> AgentRecord:
    """One agent (from the read model, else from its active key), or 404."""
    record = await readstore.agent(ctx.redis, ctx.keys, agent_id)
    if record is not None:
        return record
    bound = [k for k in await ctx.store.of_agent(agent_id) if k.status == "active"]
    if not bound:
        raise not_found("agent", agent_id)
    return AgentRecord(
        agent_id=agent_id,
        display_name=bound[0].display_name or bound[0].label,
        registered_at=bound[0].registered_at,
    )


async def detail(ctx: ApiContext, agent_id: str) -> AgentDetail:
    record = await find(ctx, agent_id)
    return AgentDetail(
        agent=view(record, AgentView),
        keys=tuple(k.info() for k in await ctx.store.of_agent(agent_id)),
        heartbeats=tuple(await readstore.heartbeats(ctx.redis, ctx.keys, agent_id)),
        commands=tuple(view(c, CommandView) for c in await readstore.command_history(ctx.redis, ctx.keys, agent_id)),
        quota_refusals=tuple(await quotas.refusals(ctx.redis, ctx.keys, agent_id)),
    )


def allow_list(values: tuple[str, ...], field: str, *, suffix: bool = False) -> tuple[str, ...]:
    """Allowed zones (or, with ``suffix``, hostname suffixes): checked, normalised, each once, at most
    ``MAX_NAMES``."""
    if len(values) > MAX_NAMES:
        raise invalid(field, f"at most {MAX_NAMES} entries, got {len(values)}")
    return tuple(dict.fromkeys(validation.names(values, field, suffix=suffix)))


def origin_kinds(values: tuple[str, ...]) -> tuple[str, ...]:
    """Origin kinds allowed beyond the default policy (``flareport_common.policy``): known ones only, each once."""
    for index, kind in enumerate(values):
        if unknown_kinds([kind]):
            raise invalid(f"origin_allow[{index}]", f"unknown origin kind {kind[:64]!r}: {kinds_hint()}")
    return tuple(sorted(set(values)))


def removable(record: AgentRecord) -> bool:
    """Whether the agent may be removed without force (it is not connected)."""
    return record.status in REMOVABLE


async def enroll(ctx: ApiContext, agent_id: str, body: EnrollRequest) -> Accepted:
    """Enrol an agent: create the tunnel ``tunnel_name`` or adopt ``tunnel_id`` (neither: a tunnel named after the
    agent), with the publishing policy ``body`` gives."""
    if body.tunnel_name is not None and body.tunnel_id is not None:
        raise invalid("tunnel_id", "give tunnel_name (create) or tunnel_id (adopt), not both")
    tunnel_name = body.tunnel_name
    if tunnel_name is not None:
        tunnel_name = validation.text(tunnel_name, "tunnel_name", maximum=100)
    tunnel_id = body.tunnel_id
    if tunnel_id is not None:
        tunnel_id = validation.path_id(tunnel_id, "tunnel_id")
    zones = allow_list(body.allowed_zones, "allowed_zones")
    suffixes = allow_list(body.allowed_suffixes, "allowed_suffixes", suffix=True)
    kinds = origin_kinds(body.origin_allow)
    await find(ctx, agent_id)
    if tunnel_name is None and tunnel_id is None:
        tunnel_name = f"flareport-{agent_id}"  # the default: one tunnel per agent, named after it
    intent = AgentEnrolled(
        agent_id=agent_id,
        tunnel_name=tunnel_name,
        tunnel_id=tunnel_id,
        allowed_zones=zones,
        allowed_suffixes=suffixes,
        allow_wildcard=body.allow_wildcard,
        allow_apex=body.allow_apex,
        origin_allow=kinds,
    )
    return await intents.send(ctx, intent)


async def change_policy(ctx: ApiContext, agent_id: str, body: PolicyRequest) -> Accepted:
    """Change what an agent may publish (its allow-lists and publishing flags); a field left out (None) keeps its
    current value. The admin alone decides it."""
    if all(v is None for v in msgspec.structs.astuple(body)):
        fields = ", ".join(f.name for f in msgspec.structs.fields(PolicyRequest))
        raise invalid("$", f"nothing to change: give at least one of {fields}")
    zones = None if body.allowed_zones is None else allow_list(body.allowed_zones, "allowed_zones")
    suffixes = (
        None if body.allowed_suffixes is None else allow_list(body.allowed_suffixes, "allowed_suffixes", suffix=True)
    )
    kinds = None if body.origin_allow is None else origin_kinds(body.origin_allow)
    current = await find(ctx, agent_id)
    intent = AgentPolicyChanged(
        agent_id=agent_id,
        allowed_zones=current.allowed_zones if zones is None else zones,
        allowed_suffixes=current.allowed_suffixes if suffixes is None else suffixes,
        allow_wildcard=current.allow_wildcard if body.allow_wildcard is None else body.allow_wildcard,
        allow_apex=current.allow_apex if body.allow_apex is None else body.allow_apex,
        origin_allow=current.origin_allow if kinds is None else kinds,
    )
    return await intents.send(ctx, intent)


async def rename(ctx: ApiContext, agent_id: str, display_name: str) -> Accepted:
    name = validation.text(display_name, "display_name")
    await find(ctx, agent_id)
    return await intents.send(ctx, AgentRenamed(agent_id=agent_id, display_name=name))


async def decommission(ctx: ApiContext, agent_id: str) -> Accepted:
    await find(ctx, agent_id)
    return await intents.send(ctx, AgentDecommissioned(agent_id=agent_id))


async def remove(ctx: ApiContext, agent_id: str, *, force: bool) -> Accepted:
    """Forget an agent and revoke its keys; one still connected only with ``force`` (409 otherwise)."""
    record = await find(ctx, agent_id)
    if not removable(record) and not force:
        raise ApiError(
            409, "agent_online", f"agent is {record.status}; decommission it first, or remove with force=true"
        )
    # A removed agent must not come back with its old key.
    await ctx.store.revoke_agent_keys(agent_id)
    await longpoll.notify(ctx.redis, ctx.keys, agent_id)  # its waiting polls end now, with 401
    return await intents.send(ctx, AgentRemoved(agent_id=agent_id))
