"""The dashboard's rule actions: "Delete now" for a rule in ``pending_deletion``, the same use case as
``POST /api/v1/rules/{hostname}/force-delete`` (``usecases.forcedelete``), recorded in the audit list under the
signed-in admin's name (``ui:<user>``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from flareport_api import validation
from flareport_api.state import ApiContext
from flareport_api.ui.guards import done, field, form
from flareport_api.ui.sessions import Session
from flareport_api.usecases import audit, forcedelete


@form("/ui/")
async def force_delete(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    hostname = validation.hostname(field(data, "hostname"), "hostname")
    path = field(data, "path") or None
    await forcedelete.force_delete(ctx, hostname, path, audit.ui_actor(session.user))
    message = f"Rule {hostname}{path or ''} is deleted now, without waiting for its grace period."
    raise await done(request, session, message, data, "/ui/")
