"""The OpenAPI document matches the routes the server really has, and a schemathesis run against a real
``flareport api`` process finds no server error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from flareport_api.app import create_app
from fptest.api_helpers import MASTER

from .conftest import Api, make_settings

_PARAM = re.compile(r"\{([^}]+)\}")


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


async def test_openapi_lists_exactly_the_registered_routes(api: Api) -> None:
    response = await api.client.get("/api/v1/openapi.json")
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    app = create_app(make_settings("redis://127.0.0.1:1", "x:"))
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # The web UI's HTML routes (flareport_api.ui) are not part of the JSON API's contract.
        and not (route.name or "").startswith("ui-")
    }
    assert documented == registered
    for (method, path), operation in (
        ((m.upper(), p), op) for p, ops in document["paths"].items() for m, op in ops.items()
    ):
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(_PARAM.findall(path)), f"{method} {path}: path parameters"
        assert "500" in operation["responses"], f"{method} {path}: every operation documents its error body"
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids)), "operation ids are unique"
    components = document["components"]["schemas"]
    missing = {ref for ref in _refs(document) if ref.removeprefix("#/components/schemas/") not in components}
    assert not missing, f"references to undefined schemas: {missing}"
    assert {"ErrorResponse", "RegisterRequest", "EventBatch", "CommandBatch", "RuleInput"} <= set(components)


async def test_documented_status_of_a_real_answer(api: Api) -> None:
    """Spot check that answers use the documented statuses: created keys are 201, invalid bodies 422."""
    document = await (await api.client.get("/api/v1/openapi.json")).json()
    create = document["paths"]["/api/v1/keys"]["post"]["responses"]
    assert {"201", "422"} <= set(create)
    assert (await api.client.post("/api/v1/keys", json={"label": "x"}, headers=api.admin)).status == 201
    assert (await api.client.post("/api/v1/keys", json={"labl": "x"}, headers=api.admin)).status == 422


def test_schemathesis_finds_no_server_error(api_process: Any, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{api_process.url}/api/v1/openapi.json",
            "--checks", "not_a_server_error",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", "6",
            "--seed", "1",
            "--workers", "1",
            "--request-timeout", "10",
            "--generation-database", "none",
            "--no-color",
            "--header", f"Authorization: Bearer {MASTER}",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, f"schemathesis found failures:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
