"""Access groups: the admin's named sets of people (Cloudflare Access rules) that ``access.group=<id>`` labels use.

Two system groups (DockFlare's built-in ones) are always listed, never stored and never changed; the reconciler
resolves them. The admin's groups are kept in the API's hash with their intent in one transaction
(``intents.store_with``). A group's id is chosen by the admin or derived from its name, and never changes: labels
reference it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import msgspec
from redis.exceptions import WatchError

from flareport_api import validation
from flareport_api.apierror import ApiError, invalid, not_found
from flareport_api.schemas import Accepted, AccessGroup, AccessGroupRequest
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common import readversion
from flareport_common.access import AUTHENTICATED, DEFAULT_SESSION, LEGACY_BYPASS, PUBLIC_BYPASS
from flareport_common.messages.base import Message, new_id, utcnow
from flareport_common.messages.intents import AccessGroupDeleted, AccessGroupUpserted
from flareport_common.streams.codec import encode
from flareport_common.validate import ACCESS_RULE_TYPES

_encoder = msgspec.json.Encoder()

# The id ``access.group=<id>`` labels reference: chosen by the admin (or derived from the name). Lower case only, so
# a label can never name a group that differs from another by case alone.
GROUP_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
_SLUG_NOISE = re.compile(r"[^a-z0-9_.-]+")
_CREATE_TRIES = 20  # optimistic retries of one create while other groups change (each failure means one succeeded)

# DockFlare's two built-in groups (docs/dev/dockflare-access-spec.md, 3.3): always listed, never stored, never
# changed through the API; the reconciler resolves them (flareport_common.access.system_group).
SYSTEM_GROUPS: dict[str, AccessGroup] = {
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
    if group_id in SYSTEM_GROUPS:
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


def check(body: AccessGroupRequest) -> None:
    """Refuse a group ``save`` would refuse (422 naming the field), before anything is written: a restore checks
    every object of its document first."""
    _group_fields(body)


async def _stored(ctx: ApiContext) -> dict[str, AccessGroup]:
    raw = await ctx.redis.hgetall(ctx.keys.api_access_groups)
    groups = (msgspec.json.decode(v, type=AccessGroup) for v in raw.values())
    return {g.group_id: g for g in groups if g.group_id not in SYSTEM_GROUPS}


async def every(ctx: ApiContext) -> list[AccessGroup]:
    """The system groups first, then the admin's groups by name (the API's list and the web UI's page)."""
    stored = sorted((await _stored(ctx)).values(), key=lambda g: (g.name, g.group_id))
    return [*SYSTEM_GROUPS.values(), *stored]


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


async def get(ctx: ApiContext, group_id: str) -> AccessGroup:
    """A system group or one of the admin's, or 404."""
    if (system := SYSTEM_GROUPS.get(group_id)) is not None:
        return system
    raw = await ctx.redis.hget(ctx.keys.api_access_groups, group_id)
    if raw is None:
        raise not_found("access group", group_id)
    return msgspec.json.decode(raw, type=AccessGroup)


async def save(ctx: ApiContext, group_id: str | None, body: AccessGroupRequest, *, creating: bool) -> AccessGroup:
    """Validate and store an access group with its intent.

    Creating: ``group_id`` is the admin's chosen id (409 when taken), or None to derive it from the name (a
    generated ``ag_…`` id when that is empty or taken). Replacing: the existing group's id (404 otherwise)."""
    fields = _group_fields(body)
    if creating:
        chosen = None if group_id is None else chosen_group_id(group_id)
        derived = slug(fields["name"])
        candidates = [chosen] if chosen is not None else []
        if chosen is None and GROUP_ID.match(derived) and derived not in (*SYSTEM_GROUPS, LEGACY_BYPASS):
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
    await intents.store_with(ctx, ctx.keys.api_access_groups, group_id, _encoder.encode(stored), intent)
    return stored


async def delete(ctx: ApiContext, group_id: str) -> Accepted:
    """Remove an admin's group and tell the reconciler (409 for a system group, 404 for an unknown one)."""
    refuse_system_group(group_id, "deleted")
    if not await ctx.redis.hexists(ctx.keys.api_access_groups, group_id):
        raise not_found("access group", group_id)
    intent = AccessGroupDeleted(group_id=group_id)
    return await intents.store_with(ctx, ctx.keys.api_access_groups, group_id, None, intent)
