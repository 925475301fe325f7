"""Cloudflare's response envelope, pagination and request-body helpers.

Every v4 response is ``{"success", "errors", "messages", "result"}`` plus ``result_info`` on
lists.  The SDK's ``V4PagePaginationArray`` keeps asking for ``page + 1`` until a page comes
back empty, so a page past the last one must answer ``success: true`` with an empty list
(never 404) - :func:`paginate` does exactly that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from flareport_cfemu.errors import INVALID_REQUEST, PAGE_SIZE_INVALID, ApiError, bad_request

Json = dict[str, Any]
API_PREFIX = "/client/v4"


def success(result: Any, *, result_info: Json | None = None, status: int = 200) -> web.Response:
    body: Json = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return web.json_response(body, status=status)


def error_body(code: int, message: str, chain: Sequence[tuple[int, str]] = ()) -> Json:
    error: Json = {"code": code, "message": message}
    if chain:
        error["error_chain"] = [{"code": c, "message": m} for c, m in chain]
    return {"success": False, "errors": [error], "messages": [], "result": None}


def error_response(error: ApiError, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(error.code, error.message, error.chain), status=error.status, headers=headers)


def _number(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(INVALID_REQUEST, f"{name} must be a number") from None
    if not math.isfinite(value):
        raise bad_request(INVALID_REQUEST, f"{name} must be a number")
    return int(value)


def paginate(
    items: Sequence[Json],
    query: Any,
    *,
    default_per_page: int,
    min_per_page: int = 1,
    max_per_page: int,
    totals: bool = True,
) -> tuple[list[Json], Json]:
    """Slice ``items`` by ``page``/``per_page`` (1-based). A ``per_page`` outside the endpoint's bounds is refused
    (400), as Cloudflare refuses it, rather than clamped. ``totals=False`` leaves ``total_count`` and
    ``total_pages`` out of ``result_info``, as Cloudflare's tunnel list does: a client must then page on until a
    page comes back short.
    """
    page = max(1, _number(query, "page", 1))
    per_page = _number(query, "per_page", default_per_page)
    if not min_per_page <= per_page <= max_per_page:
        raise bad_request(
            PAGE_SIZE_INVALID, f"per_page must be between {min_per_page} and {max_per_page}, got {per_page}"
        )
    total = len(items)
    start = (page - 1) * per_page
    chunk = list(items[start : start + per_page])
    info: Json = {"page": page, "per_page": per_page, "count": len(chunk)}
    if totals:
        info["total_count"] = total
        info["total_pages"] = max(1, math.ceil(total / per_page)) if total else 0
    return chunk, info


def query_bool(query: Any, name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    lowered = str(raw).lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise bad_request(INVALID_REQUEST, f"{name} must be true or false")


async def read_json(request: web.Request) -> Json:
    """The request body as a JSON object; Cloudflare answers malformed bodies with a 400."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request(INVALID_REQUEST, "Malformed JSON in request body") from None
    if not isinstance(body, dict):
        raise bad_request(INVALID_REQUEST, "Request body must be a JSON object")
    return body
