"""The OpenAPI document matches the routes the server really has, and a schemathesis run against a real
``flareport api`` process finds no server error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flareport_api.app import create_app
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.commands import StartTunnel
from flareport_common.streams.codec import encode
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess
from fptest.cli_helpers import api_process as start_api_process

from .conftest import Api, make_settings

_PARAM = re.compile(r"\{([^}]+)\}")
_LINKS_COVERED = re.compile(r"API Links:\s+(\d+) covered")


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


async def test_links_lead_from_an_answer_to_the_operations_taking_its_ids(api: Api) -> None:
    document = await (await api.client.get("/api/v1/openapi.json")).json()
    operations = {op["operationId"]: (path, op) for path, ops in document["paths"].items() for op in ops.values()}
    for path, ops in document["paths"].items():
        for operation in ops.values():
            for response in operation["responses"].values():
                for link in response.get("links", {}).values():
                    target_path, target = operations[link["operationId"]]
                    assert set(link["parameters"]) == set(_PARAM.findall(target_path)), (path, link)
                    assert target["security"] == operation["security"], "a link stays with one kind of caller"
    created = document["paths"]["/api/v1/keys"]["post"]["responses"]["201"]["links"]
    assert created["get_key"]["parameters"] == {"key_id": "$response.body#/info/key_id"}
    assert {"revoke_key", "roll_key"} <= set(created)
    rule = document["paths"]["/api/v1/manual-rules"]["post"]["responses"]["201"]["links"]
    assert {"get_manual", "update_manual", "delete_manual", "assign"} <= set(rule)
    assert rule["assign"]["parameters"] == {"hostname": "$response.body#/rule/hostname"}
    listed = document["paths"]["/api/v1/agents"]["get"]["responses"]["200"]["links"]
    assert listed["set_policy"]["parameters"] == {"agent_id": "$response.body#/agents/0/agent_id"}
    assert "rule_detail" not in listed, "an agent's hostname is its machine's name, not a published one"
    assigned = document["paths"]["/api/v1/hostnames/{hostname}/owner"]["put"]["responses"]["202"]["links"]
    assert assigned["unassign"]["parameters"] == {"hostname": "$request.path.hostname"}
    polled = document["paths"]["/api/v1/agents/{agent_id}/commands"]["get"]["responses"]["200"]["links"]
    assert polled["ack"]["parameters"] == {
        "agent_id": "$request.path.agent_id",
        "command_id": "$response.body#/commands/0/command_id",
    }


async def test_documented_status_of_a_real_answer(api: Api) -> None:
    """Spot check that answers use the documented statuses: created keys are 201, invalid bodies 422."""
    document = await (await api.client.get("/api/v1/openapi.json")).json()
    create = document["paths"]["/api/v1/keys"]["post"]["responses"]
    assert {"201", "422"} <= set(create)
    assert (await api.client.post("/api/v1/keys", json={"label": "x"}, headers=api.admin)).status == 201
    assert (await api.client.post("/api/v1/keys", json={"labl": "x"}, headers=api.admin)).status == 422


@pytest.fixture
def fuzzed_api(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[ApiProcess]:
    """``flareport api`` as its own process, set up to be fuzzed: long-polls answer within half a second (a fuzzer
    that asks for the documented maximum must not wait out its request timeout) and the brake on failed
    authentications is out of the way (schemathesis sends many requests without a valid key on purpose; the brake
    is tested in-process)."""
    extra = {
        "FLAREPORT_API_MAX_BODY_BYTES": "65536",
        "FLAREPORT_API_COMMAND_POLL_SECONDS": "5",
        "FLAREPORT_API_MAX_WAIT_SECONDS": "0.5",
        "FLAREPORT_API_AUTH_FAILURE_LIMIT": "1000000",
    }
    with start_api_process(redis_server.url, prefix, tmp_path / "api.log", extra) as process:
        yield process


def _agent_with_commands(url: str, redis_url: str, keys: Keys) -> str:
    """A registered agent's key, with commands waiting for it, so the fuzzer can poll and acknowledge real ones."""

    def post(path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(url + path, json.dumps(body).encode(), headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    key = str(post("/api/v1/keys", {"label": "fuzzed agent"}, MASTER)["key"])
    agent_id = str(post("/api/v1/agents/register", {"display_name": "fuzzed"}, key)["agent_id"])
    client = redis.Redis.from_url(redis_url)
    try:
        for index in range(20):
            client.xadd(keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id=f"t{index}", token="x")))  # type: ignore[arg-type]
    finally:
        client.close()
    return key


def _schemathesis(url: str, token: str, tmp_path: Path, *only: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/api/v1/openapi.json",
            "--checks", "not_a_server_error",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", "8",
            "--seed", "1",
            "--workers", "1",
            "--request-timeout", "10",
            "--generation-database", "none",
            "--no-color",
            "--header", f"Authorization: Bearer {token}",
            *only,
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )  # fmt: skip


def _assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"schemathesis found failures:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    links = _LINKS_COVERED.search(result.stdout)
    assert links is not None and int(links[1]) > 0, f"the stateful phase followed no link:\n{result.stdout[-3000:]}"


# Every admin route is fuzzed in all four phases; with ~60 operations that takes most of a minute on an idle CI
# machine and more under load, past the suite's default limit.
@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error(
    fuzzed_api: ApiProcess, redis_server: LocalRedis, keys: Keys, tmp_path: Path
) -> None:
    """Every phase, stateful included (it follows the document's links: create a key, then read, revoke, roll it),
    first as an agent on the agent protocol, then as the admin over the whole API."""
    agent_key = _agent_with_commands(fuzzed_api.url, redis_server.url, keys)
    _assert_clean(_schemathesis(fuzzed_api.url, agent_key, tmp_path, "--include-tag", "agent protocol"))
    _assert_clean(_schemathesis(fuzzed_api.url, MASTER, tmp_path))
