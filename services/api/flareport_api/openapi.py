"""The OpenAPI 3.1 document, generated from the same route table the router is built from.

Component schemas come from the msgspec structs themselves (``msgspec.json.schema_components``), so a field
added to a struct appears in the document without anyone remembering to edit it. Every operation documents
its success status and the error statuses it can answer, all with the ``ErrorResponse`` body.

Links (OpenAPI ``links``) are derived the same way: where an answer carries an id that another operation takes
in its path (``POST /api/v1/keys`` answers ``info.key_id``, which ``GET /api/v1/keys/{key_id}`` takes), or the
request's own path has it, the success response links to that operation for a caller of the same kind (admin or
agent). Clients and stateful fuzzers (schemathesis) follow them: create, read, change, delete the same resource.
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
# An answer's field that holds another path parameter's value under another name.
_ALIASES = {"new_key_id": "key_id"}
# Fields named like a path parameter that hold something else (an agent's ``hostname`` is its machine's name).
_NOT_IDS = {("AgentView", "hostname")}
# How far into an answer ids are looked for: ``info.key_id``, ``agents[0].agent_id``, ``rules[0].hostname``.
_LINK_DEPTH = 3


def _is_text(schema: dict[str, Any]) -> bool:
    """A string, or a nullable one (``anyOf: [string, null]``)."""
    if schema.get("type") == "string":
        return True
    options = schema.get("anyOf", [])
    return bool(options) and all(o.get("type") in ("string", "null") for o in options)


def _id_pointers(schema: dict[str, Any], components: dict[str, Any], names: set[str]) -> dict[str, str]:
    """Path parameter name -> JSON pointer of the shallowest field of an answer that holds it (breadth first)."""
    found: dict[str, str] = {}
    queue: list[tuple[dict[str, Any], str, int]] = [(schema, "", 0)]
    while queue:
        node, pointer, depth = queue.pop(0)
        struct = ""
        while "$ref" in node:
            struct = node["$ref"].rsplit("/", 1)[1]
            node = components[struct]
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:  # nullable: look inside; a union of several kinds has no one place for an id
            queue.append((options[0], pointer, depth))
            continue
        if node.get("type") == "array" and depth < _LINK_DEPTH:
            queue.append((node.get("items", {}), f"{pointer}/0", depth + 1))
        for prop, sub in node.get("properties", {}).items():
            name = _ALIASES.get(prop, prop)
            if (struct, prop) in _NOT_IDS:
                continue
            if name in names and _is_text(sub):
                found.setdefault(name, f"{pointer}/{prop}")
            elif depth + 1 < _LINK_DEPTH:
                queue.append((sub, f"{pointer}/{prop}", depth + 1))
    return found


def _links(route: Route, routes: list[Route], response: dict[str, Any] | None, components: dict[str, Any]) -> Any:
    """The operations a caller of the same kind can go on to with the ids this route's request and answer hold."""
    names = {name for other in routes for name in _PARAM.findall(other.path)}
    known = {} if response is None else _id_pointers(response, components, names)
    given = {name: f"$response.body#{pointer}" for name, pointer in known.items()}
    given.update({name: f"$request.path.{name}" for name in _PARAM.findall(route.path)})
    links: dict[str, Any] = {}
    for target in routes:
        wanted = _PARAM.findall(target.path)
        if target is route or target.auth != route.auth or not wanted or not set(wanted) <= set(given):
            continue
        operation = target.handler.__name__
        links[operation] = {"operationId": operation, "parameters": {name: given[name] for name in wanted}}
    return links


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
        links = _links(route, routes, None if route.response is None else schema_of[route.response], components)
        if links:
            success["links"] = links
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
