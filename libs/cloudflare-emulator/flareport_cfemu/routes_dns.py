"""DNS record endpoints: list, CRUD and the batch endpoint, thin over :mod:`dns_store`.

``per_page`` for DNS records defaults to 100 and is clamped to 5..5,000,000 (Cloudflare's
documented bounds), so "read with the largest page size" works as on Cloudflare.
"""

from __future__ import annotations

from aiohttp import web

from flareport_cfemu import dns_store
from flareport_cfemu.dns_filters import select
from flareport_cfemu.envelope import API_PREFIX, paginate, read_json, success
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.state import public

routes = web.RouteTableDef()
RECORDS = API_PREFIX + "/zones/{zone_id}/dns_records"
RECORD = RECORDS + "/{dns_record_id}"


@routes.get(RECORDS)
async def list_records(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    zone_id = request.match_info["zone_id"]
    state.zone(zone_id, request.path)
    chosen = select(state.records_of(zone_id).values(), request.query)
    page, info = paginate(
        [public(r) for r in chosen], request.query, default_per_page=100, min_per_page=5, max_per_page=5_000_000
    )
    return success(page, result_info=info)


@routes.post(RECORDS + "/batch")
async def batch_records(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    body = await read_json(request)
    result = dns_store.batch(emulator.state, emulator.config, request.match_info["zone_id"], body, request.path)
    return success(result)


@routes.post(RECORDS)
async def create_record(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    body = await read_json(request)
    record = dns_store.create_record(emulator.state, emulator.config, request.match_info["zone_id"], body, request.path)
    return success(record)


@routes.get(RECORD)
async def get_record(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    return success(dns_store.get_record(state, info["zone_id"], info["dns_record_id"], request.path))


@routes.put(RECORD)
async def replace_record(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    info = request.match_info
    body = await read_json(request)
    record = dns_store.replace_record(
        emulator.state, emulator.config, info["zone_id"], info["dns_record_id"], body, request.path
    )
    return success(record)


@routes.patch(RECORD)
async def patch_record(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    info = request.match_info
    body = await read_json(request)
    record = dns_store.patch_record(
        emulator.state, emulator.config, info["zone_id"], info["dns_record_id"], body, request.path
    )
    return success(record)


@routes.delete(RECORD)
async def delete_record(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    info = request.match_info
    return success(dns_store.delete_record(state, info["zone_id"], info["dns_record_id"], request.path))
