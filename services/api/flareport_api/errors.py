"""Errors as the API answers them: one JSON shape (``ErrorResponse``) for every 4xx/5xx, naming the field.

Handlers raise ``ApiError`` (or one of its helpers); the error middleware turns it, aiohttp's own HTTP errors
(unknown route, wrong method, oversize body) and unexpected exceptions into ``ErrorResponse`` bodies, so a
client never has to parse HTML or guess which field was wrong. Bodies are decoded here, against the route's
schema with unknown fields forbidden, *before* a handler touches Redis: a rejected request writes nothing.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

# The refusal itself lives in apierror (no aiohttp there, for the pure checks); route modules keep importing their
# whole error vocabulary from here.
from flareport_api.apierror import ApiError as ApiError
from flareport_api.apierror import invalid as invalid
from flareport_api.apierror import not_found as not_found
from flareport_common.protocol import ErrorDetail, ErrorResponse

T = TypeVar("T")

# The deepest legitimate body nests some 12 levels (an inventory event's rule's Access custom rules); anything
# deeper is refused before it is decoded, so hostile nesting never reaches a recursive decoder or handler.
MAX_JSON_DEPTH = 32
_STRUCTURE_ONLY = bytes(range(256)).translate(None, b'"[]{}')  # every byte but quotes and brackets
_BRACKETS = bytes.maketrans(b"{}", b"[]")

_encoder = msgspec.json.Encoder()
_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `(?P<name>[^`]+)`")
# Query numbers in ASCII digits only: int() and float() would also take "1_0", full-width digits, "nan" or "inf".
_QUERY_INT = re.compile(r"^[+-]?[0-9]{1,20}\Z")
_QUERY_NUMBER = re.compile(r"^[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})\Z")


def error_response(
    status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, field=field))
    return web.Response(
        body=_encoder.encode(body), status=status, content_type="application/json", headers=headers or None
    )


def json_response(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def field_of(exc: msgspec.ValidationError) -> str | None:
    """The offending field of a msgspec validation error, as a dotted path (``events[0].seq``)."""
    text = str(exc)
    path = ""
    at = _AT_PATH.search(text)
    if at:
        path = at["path"].lstrip(".")
    named = _NAMED_FIELD.search(text)
    if named:
        path = f"{path}.{named['name']}" if path else named["name"]
    return path or None


def _clean(text: str) -> str:
    return _AT_PATH.sub("", text)


def json_nesting(raw: bytes, limit: int = MAX_JSON_DEPTH) -> Literal["ok", "too_deep", "unbalanced"]:
    """Whether the JSON text ``raw`` nests arrays and objects deeper than ``limit`` (or its brackets do not pair).

    Linear and without recursion, in C-speed byte operations (no Python loop per byte): escaped backslashes and
    quotes are dropped, then every byte but quotes and brackets, then what lies between quote pairs (brackets
    inside strings do not nest); of the brackets left, each pass removes the innermost pairs, so a pair still
    there after ``limit`` passes sits deeper than ``limit``. Only a body that is not JSON can be misjudged, and
    it is refused either way."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return "ok"
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    text = text.translate(None, _STRUCTURE_ONLY)
    text = text.replace(b'""', b"")  # most strings hold no bracket: one pass drops them (and keeps quote parity)
    if b'"' in text:
        text = b"".join(text.split(b'"')[::2])  # an unterminated last string counts as inside
    text = text.translate(_BRACKETS)
    too_deep = b"[" * (limit + 1)
    for _ in range(limit):
        if too_deep in text:
            return "too_deep"
        if b"[]" not in text:
            return "unbalanced" if text else "ok"
        text = text.replace(b"[]", b"")
    if b"[]" in text:
        return "too_deep"
    return "unbalanced" if text else "ok"


async def read_body(request: web.Request, schema: type[T]) -> T:
    """Decode the request body against ``schema``; 413 above the size limit, 422 naming the field otherwise."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        raise ApiError(413, "body_too_large", f"request body larger than {limit} bytes") from None
    if not raw:
        raise ApiError(422, "invalid_body", "request body is empty; a JSON object is required", field="$")
    nesting = json_nesting(raw)
    if nesting == "too_deep":
        raise ApiError(400, "too_deep", f"body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels", field="$")
    if nesting == "unbalanced":
        raise ApiError(400, "malformed_json", "body is not valid JSON: its brackets do not pair up", field="$")
    try:
        return msgspec.json.decode(raw, type=schema)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid_body", _clean(str(exc)), field=field_of(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}", field="$") from None
    except RecursionError:
        # msgspec decodes nested JSON recursively: a hostile nesting is a bad body, not a 500.
        raise ApiError(400, "malformed_json", "body nests JSON too deeply", field="$") from None


def query_float(request: web.Request, name: str, *, default: float, minimum: float, maximum: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _QUERY_NUMBER.match(raw):
        raise ApiError(422, "invalid_query", f"{name} must be a number, got {raw[:40]!r}", field=name)
    value = float(raw)
    if not minimum <= value <= maximum:  # also rejects NaN
        raise ApiError(422, "invalid_query", f"{name} must be between {minimum:g} and {maximum:g}", field=name)
    return value


def query_int(request: web.Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _QUERY_INT.match(raw):
        raise ApiError(422, "invalid_query", f"{name} must be an integer, got {raw[:40]!r}", field=name)
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ApiError(422, "invalid_query", f"{name} must be between {minimum} and {maximum}", field=name)
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ApiError(422, "invalid_query", f"{name} must be one of {', '.join(choices)}", field=name)
    return raw
