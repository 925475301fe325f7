"""Account members and Access identity providers (login methods): what Flareport reads to find the account
owner's email and the One-time PIN login method.

* ``GET /accounts/{account_id}/members`` — members with their roles (``per_page`` 5..50, default 20);
  each role carries Cloudflare's ``permissions`` map (``{"analytics": {"read": true, "write": true}, ...}``).
* ``GET/POST /accounts/{account_id}/access/identity_providers``, ``GET/DELETE .../identity_providers/{id}`` —
  ``type`` one of Cloudflare's IdP types (``onetimepin`` has an empty ``config``); lists 1..50 per page.

A seeded account gets one member, its owner (``owner_email`` of the seed's account, default
``owner@example.com``, role "Super Administrator - All Privileges"), and a One-time PIN login method unless the
seed says ``"one_time_pin": false`` (seed.py). Tests add members with the seed's ``account_members`` and remove the
login method with ``DELETE``, as an administrator would in the dashboard.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flareport_cfemu.access_store import missing
from flareport_cfemu.account_store import add_identity_provider
from flareport_cfemu.envelope import API_PREFIX, paginate, read_json, success
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.state import EmulatorState, public

Json = dict[str, Any]
routes = web.RouteTableDef()
MEMBERS = API_PREFIX + "/accounts/{account_id}/members"
IDPS = API_PREFIX + "/accounts/{account_id}/access/identity_providers"


def _account(request: web.Request) -> tuple[EmulatorState, str]:
    state = request.app[EMULATOR].state
    account_id = request.match_info["account_id"]
    state.account(account_id, request.path)
    return state, account_id


def _idp(state: EmulatorState, account_id: str, idp_id: str) -> Json:
    idp = state.identity_providers.get(idp_id)
    if idp is None or idp["_account_id"] != account_id:
        raise missing("identity provider")
    return idp


@routes.get(MEMBERS)
async def list_members(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    members = list(state.account_members.get(account_id, {}).values())
    page, info = paginate(members, request.query, default_per_page=20, min_per_page=5, max_per_page=50)
    return success(page, result_info=info)


@routes.get(IDPS)
async def list_identity_providers(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    chosen = [public(p) for p in state.identity_providers.values() if p["_account_id"] == account_id]
    page, info = paginate(chosen, request.query, default_per_page=25, max_per_page=50)
    return success(page, result_info=info)


@routes.post(IDPS)
async def create_identity_provider(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(public(add_identity_provider(state, account_id, await read_json(request))), status=201)


@routes.get(IDPS + "/{idp_id}")
async def get_identity_provider(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(public(_idp(state, account_id, request.match_info["idp_id"])))


@routes.delete(IDPS + "/{idp_id}")
async def delete_identity_provider(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    idp = _idp(state, account_id, request.match_info["idp_id"])
    del state.identity_providers[idp["id"]]
    state.touch()
    return success({"id": idp["id"]})
