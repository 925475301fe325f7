"""The backup page: download the admin's state as JSON, upload a backup to restore (a dry run unless "apply").

Both go through ``usecases.backups``, as ``GET /api/v1/backup`` and ``POST /api/v1/restore`` do, so a restore from
the browser is checked, compared and written exactly like one from the CLI. The report is rendered into the
answer of the upload itself: it belongs to that file, and a dry run is safe to repeat.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from multidict import MultiDictProxy

from flareport_api.apierror import ApiError
from flareport_api.backupschemas import Backup
from flareport_api.errors import json_nesting
from flareport_api.state import ApiContext
from flareport_api.ui.guards import UI, FormError, form, page, render
from flareport_api.ui.sessions import Session
from flareport_api.usecases import backups

_encoder = msgspec.json.Encoder()
MAX_NESTING = 32


@page
async def backup_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    # A live refresh must not take the one-time notice (as in pages._common).
    live = request.headers.get("X-Requested-With") == "live"
    flash = None if live else await request.app[UI].sessions.pop_flash(session)
    return render(request, "backup.html", session=session, flash=flash, report=None, redo=backups.REDO)


@page
async def download(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    document = await backups.backup(ctx)
    name = f"flareport-backup-{document.created_at:%Y%m%dT%H%M%SZ}.json"
    return web.Response(
        body=_encoder.encode(document),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def _document(data: MultiDictProxy[Any]) -> Backup:
    upload = data.get("file")
    raw = upload.file.read() if isinstance(upload, web.FileField) else b""
    if not raw:
        raise FormError("Choose a backup file (written by Download backup or flareport backup) to restore.")
    if json_nesting(raw, MAX_NESTING) != "ok":
        raise FormError("The file is not a JSON document; nothing was restored.")
    try:
        return msgspec.json.decode(raw, type=Backup)
    except msgspec.ValidationError as exc:
        raise FormError(f"The file is not a valid backup: {exc}; nothing was restored.") from None
    except (msgspec.DecodeError, RecursionError):
        raise FormError("The file is not a JSON document; nothing was restored.") from None


@form("/ui/backup")
async def restore(
    request: web.Request, ctx: ApiContext, session: Session, data: MultiDictProxy[Any]
) -> web.StreamResponse:
    document = _document(data)
    try:
        report = await backups.restore(ctx, document, apply=data.get("apply") == "on")
    except ApiError as exc:
        # The field matters here: it points into a file the admin cannot see on this page.
        where = f" (field: {exc.field})" if exc.field else ""
        raise FormError(f"{exc.message}{where}; nothing was restored.") from None
    return render(request, "backup.html", session=session, flash=None, report=report, redo=report.redo or backups.REDO)
