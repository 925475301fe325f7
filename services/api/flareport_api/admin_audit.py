"""Admin route for the audit list: the admin actions the API recorded with who asked and when
(``usecases.audit``)."""

from __future__ import annotations

from aiohttp import web

from flareport_api.errors import json_response, query_int
from flareport_api.schemas import AuditList
from flareport_api.state import QueryParam, Route, context
from flareport_api.usecases import audit


async def list_audit(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    count = query_int(request, "count", default=100, minimum=1, maximum=audit.AUDIT_LIMIT)
    return json_response(AuditList(entries=tuple(await audit.recent(ctx, count))))


ROUTES = [
    Route("GET", "/api/v1/audit", list_audit, "Recent admin actions: who asked for what, and when", "operations",
          "admin", None, AuditList, query=(QueryParam("count", {"type": "integer", "minimum": 1,
          "maximum": audit.AUDIT_LIMIT}, "how many, newest first"),), errors=(401, 422, 429)),
]  # fmt: skip
