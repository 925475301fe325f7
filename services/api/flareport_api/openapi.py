"""The OpenAPI 3.1 document, generated from the same route table the router is built from.

Component schemas come from the msgspec structs themselves (``msgspec.json.schema_components``), so a field
added to a struct appears in the document without anyone remembering to edit it. Every operation documents
its success status and the error statuses it can answer, all with the ``ErrorResponse`` body.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from flareport_api.state import Route
from flareport_common.protocol import ErrorResponse
from flareport_common.settings import ApiSettings

_PARAM = re.compile(r"\{([a-z_]+)\}")
_ERRORS = {
    400: "Body is not JSON",
    401: "Missing, unknown or revoked key",
    403: "Another agent's id, or a key not registered yet",
    404: "Unknown id",
    409: "Conflicts with the current state",
    413: "Body larger than FLAREPORT_API_MAX_BODY_BYTES",
    422: "Invalid body, query or id (the error names the field)",
    429: "Too many failed authentications from this address (see Retry-After)",
    503: "Redis is unreachable",
}
_PATH_PATTERNS = {
    "command_id": "^[0-9]{1,20}-[0-9]{1,20}$",
    "entry_id": "^[0-9]{1,20}-[0-9]{1,20}$",
    "hostname": None,
}
_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _schema_types(routes: list[Route]) -> list[Any]:
    found: list[Any] = [ErrorResponse]
    for route in routes:
        for kind in (route.body, route.response):
            if kind is not None and kind not in found:
                found.append(kind)
    return found


def build(routes: list[Route], settings: ApiSettings) -> dict[str, Any]:
    types = _schema_types(routes)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    schema_of = dict(zip(types, schemas, strict=True))
    error_body = {"application/json": {"schema": schema_of[ErrorResponse]}}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        parameters: list[dict[str, Any]] = []
        for name in _PARAM.findall(route.path):
            pattern = _PATH_PATTERNS.get(name, _ID_PATTERN)
            schema: dict[str, Any] = {"type": "string"} if pattern is None else {"type": "string", "pattern": pattern}
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        for param in route.query:
            schema = dict(param.schema)
            if param.name == "wait":
                schema["maximum"] = settings.max_wait_seconds
            parameters.append({"name": param.name, "in": "query", "required": False, "schema": schema,
                               "description": param.description})  # fmt: skip
        success: dict[str, Any] = {"description": "Success"}
        if route.response is not None:
            success["content"] = {route.content_type: {"schema": schema_of[route.response]}}
        elif route.content_type != "application/json":
            success["content"] = {route.content_type: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(route.status): success}
        for status in sorted({*route.errors, 500}):
            responses[str(status)] = {"description": _ERRORS.get(status, "Server error"), "content": error_body}
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": responses,
            "security": [] if route.auth == "none" else [{"bearer": []}],
        }
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[route.body]}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flareport API",
            "version": "1",
            "description": "Admin API (Bearer MASTER_API_KEY) and agent protocol (Bearer agent key).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
