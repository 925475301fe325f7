"""Admin routes for backups: the admin's state as one JSON document, and restoring one (``usecases.backups``).

``POST /api/v1/restore`` is a dry run unless ``apply=true``: the answer is the same report either way, so an admin
sees what a restore would do before doing it.
"""

from __future__ import annotations

from aiohttp import web

from flareport_api.backupschemas import Backup, RestoreReport
from flareport_api.errors import json_response, query_choice, read_body
from flareport_api.state import QueryParam, Route, context
from flareport_api.usecases import backups


async def get_backup(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    return json_response(await backups.backup(ctx))


async def restore(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    apply = query_choice(request, "apply", ("true", "false")) == "true"
    document = await read_body(request, Backup)
    return json_response(await backups.restore(ctx, document, apply=apply))


_APPLY = QueryParam(
    "apply", {"type": "string", "enum": ["true", "false"]}, "create what is missing (default: a dry run)"
)
ROUTES = [
    Route("GET", "/api/v1/backup", get_backup, "The admin's state as one JSON document, without secrets",
          "backups", "admin", None, Backup, errors=(401, 429)),
    Route("POST", "/api/v1/restore", restore, "Restore a backup (a dry run unless apply=true)", "backups", "admin",
          Backup, RestoreReport, query=(_APPLY,), errors=(400, 409, 413, 401, 422, 429)),
]  # fmt: skip
