"""``GET /zones`` and ``GET /zones/{zone_id}``.

Flareport only reads zones (to map hostnames to zone ids).  Filters as on Cloudflare: ``name``
(exact, or ``contains:``/``starts_with:``/``ends_with:`` prefixed), ``account.id``,
``account.name``, ``status``, combined with ``match`` (all/any); ``order`` and ``direction``
sort; ``per_page`` is clamped to Cloudflare's bounds 5..50 (default 20).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flareport_cfemu.envelope import API_PREFIX, paginate, success
from flareport_cfemu.errors import INVALID_REQUEST, bad_request
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.state import public

Json = dict[str, Any]
routes = web.RouteTableDef()
ZONE_ORDERS = {"name", "status", "account.id", "account.name", "plan.id"}


def _name_matches(zone_name: str, wanted: str) -> bool:
    wanted = wanted.lower()
    if wanted.startswith("contains:"):
        return wanted.removeprefix("contains:") in zone_name
    if wanted.startswith("starts_with:"):
        return zone_name.startswith(wanted.removeprefix("starts_with:"))
    if wanted.startswith("ends_with:"):
        return zone_name.endswith(wanted.removeprefix("ends_with:"))
    return zone_name == wanted


def _field(zone: Json, dotted: str) -> str:
    value: Any = zone
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return str(value or "")


@routes.get(API_PREFIX + "/zones")
async def list_zones(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    query = request.query
    wanted = {key: query[key] for key in ("account.id", "account.name", "status") if query.get(key)}

    def checks(zone: Json) -> list[bool]:
        results = [_field(zone, key) == value for key, value in wanted.items()]
        if query.get("name"):
            results.append(_name_matches(zone["name"], query["name"]))
        return results

    combine = any if query.get("match") == "any" else all
    zones = [z for z in state.zones.values() if not checks(z) or combine(checks(z))]
    order = query.get("order", "name")
    if order not in ZONE_ORDERS:
        raise bad_request(INVALID_REQUEST, f"order must be one of {', '.join(sorted(ZONE_ORDERS))}")
    zones.sort(key=lambda z: (_field(z, order), z["id"]), reverse=query.get("direction") == "desc")
    page, info = paginate([public(z) for z in zones], query, default_per_page=20, min_per_page=5, max_per_page=50)
    return success(page, result_info=info)


@routes.get(API_PREFIX + "/zones/{zone_id}")
async def get_zone(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    return success(public(state.zone(request.match_info["zone_id"], request.path)))
