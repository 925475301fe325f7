"""Access endpoints under ``/accounts/{account_id}/access``: apps, app-scoped policies,
reusable policies and tags; thin over :mod:`access_apps` and :mod:`access_store`.

Lists default to 25 per page; a ``per_page`` outside 1..50 is refused. Cloudflare's maximum for Access lists is not
confirmed from public sources: 50 is the smallest maximum its v4 lists are known to use (zones), so a client that
works here works there (docs/cloudflare-emulator.md, assumptions).
"""

from __future__ import annotations

from aiohttp import web

from flareport_cfemu import access_apps, access_store
from flareport_cfemu.envelope import API_PREFIX, paginate, read_json, success
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.state import EmulatorState

ACCESS_MAX_PER_PAGE = 50
routes = web.RouteTableDef()
ACCESS = API_PREFIX + "/accounts/{account_id}/access"
APP = ACCESS + "/apps/{app_id}"


def _account(request: web.Request) -> tuple[EmulatorState, str]:
    state = request.app[EMULATOR].state
    account_id = request.match_info["account_id"]
    state.account(account_id, request.path)
    return state, account_id


def _page(request: web.Request, items: list[access_store.Json]) -> web.Response:
    page, info = paginate(items, request.query, default_per_page=25, max_per_page=ACCESS_MAX_PER_PAGE)
    return success(page, result_info=info)


# --- applications -------------------------------------------------------------------------------


@routes.get(ACCESS + "/apps")
async def list_apps(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return _page(request, access_apps.list_apps(state, account_id, request.query))


@routes.post(ACCESS + "/apps")
async def create_app(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(access_apps.create_app(state, account_id, await read_json(request)), status=201)


@routes.get(APP)
async def get_app(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    app = access_apps.lookup_app(state, account_id, request.match_info["app_id"])
    return success(access_apps.render_app(state, app))


@routes.put(APP)
async def replace_app(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    body = await read_json(request)
    return success(access_apps.replace_app(state, account_id, request.match_info["app_id"], body))


@routes.delete(APP)
async def delete_app(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(access_apps.delete_app(state, account_id, request.match_info["app_id"]))


# --- app-scoped policies ------------------------------------------------------------------------


@routes.get(APP + "/policies")
async def list_app_policies(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    app = access_apps.lookup_app(state, account_id, request.match_info["app_id"])
    return _page(request, access_apps.render_app(state, app)["policies"])


@routes.post(APP + "/policies")
async def create_app_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    app = access_apps.lookup_app(state, account_id, request.match_info["app_id"])
    return success(access_apps.add_app_policy(state, account_id, app, await read_json(request)), status=201)


@routes.get(APP + "/policies/{policy_id}")
async def get_app_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    app = access_apps.lookup_app(state, account_id, request.match_info["app_id"])
    policy, precedence = access_apps.app_policy(state, app, request.match_info["policy_id"])
    return success(access_store.render_policy(state, policy, precedence))


@routes.put(APP + "/policies/{policy_id}")
async def update_app_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    app = access_apps.lookup_app(state, account_id, request.match_info["app_id"])
    policy, precedence = access_apps.app_policy(state, app, request.match_info["policy_id"])
    if policy["reusable"]:
        raise access_store.invalid("reusable policies are edited through /access/policies/{policy_id}")
    body = await read_json(request)
    access_store.update_policy(state, policy, body)
    return success(access_store.render_policy(state, policy, precedence))


@routes.delete(APP + "/policies/{policy_id}")
async def delete_app_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    app = access_apps.lookup_app(state, account_id, request.match_info["app_id"])
    return success(access_apps.remove_app_policy(state, app, request.match_info["policy_id"]))


# --- reusable policies --------------------------------------------------------------------------


@routes.get(ACCESS + "/policies")
async def list_policies(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return _page(request, access_store.list_reusable_policies(state, account_id))


@routes.post(ACCESS + "/policies")
async def create_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    policy = access_store.create_policy(state, account_id, await read_json(request))
    return success(access_store.render_policy(state, policy), status=201)


@routes.get(ACCESS + "/policies/{policy_id}")
async def get_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    policy = access_store.reusable_policy(state, account_id, request.match_info["policy_id"])
    return success(access_store.render_policy(state, policy))


@routes.put(ACCESS + "/policies/{policy_id}")
async def update_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    policy = access_store.reusable_policy(state, account_id, request.match_info["policy_id"])
    access_store.update_policy(state, policy, await read_json(request))
    return success(access_store.render_policy(state, policy))


@routes.delete(ACCESS + "/policies/{policy_id}")
async def delete_policy(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(access_store.delete_reusable_policy(state, account_id, request.match_info["policy_id"]))


# --- tags ---------------------------------------------------------------------------------------


@routes.get(ACCESS + "/tags")
async def list_tags(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    tags = sorted(access_store.tags_of(state, account_id).values(), key=lambda t: t["name"])
    return _page(request, [access_store.render_tag(state, account_id, t) for t in tags])


@routes.post(ACCESS + "/tags")
async def create_tag(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(access_store.create_tag(state, account_id, await read_json(request)), status=201)


@routes.get(ACCESS + "/tags/{tag_name}")
async def get_tag(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    tag = access_store.tags_of(state, account_id).get(request.match_info["tag_name"])
    if tag is None:
        raise access_store.missing("tag")
    return success(access_store.render_tag(state, account_id, tag))


@routes.delete(ACCESS + "/tags/{tag_name}")
async def delete_tag(request: web.Request) -> web.Response:
    state, account_id = _account(request)
    return success(access_store.delete_tag(state, account_id, request.match_info["tag_name"]))
