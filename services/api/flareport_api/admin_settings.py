"""``GET /api/v1/settings``: the API's effective configuration, secrets masked (``effectiveconfig``)."""

from __future__ import annotations

from aiohttp import web

from flareport_api.effectiveconfig import EffectiveSettings, effective
from flareport_api.errors import json_response
from flareport_api.state import Route, context


async def get_settings(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(effective(ctx.settings))


ROUTES = [
    Route("GET", "/api/v1/settings", get_settings, "The API's effective configuration, secrets masked",
          "operations", "admin", None, EffectiveSettings, errors=(401, 429)),
]  # fmt: skip
