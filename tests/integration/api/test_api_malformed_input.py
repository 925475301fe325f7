"""Every malformed input is a 4xx naming the field, over real HTTP: hostile JSON nesting is refused before it is
decoded, stream ids are checked (both halves within 64 bits) before they reach Redis, query filters are checked
like path ids, and neither ``/readyz`` nor an unexpected error tells an unauthenticated caller anything internal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from flareport_api.errors import MAX_JSON_DEPTH
from flareport_cli.localredis import LocalRedis
from fptest.cli_helpers import api_process

from .conftest import Api

MAX_ID = 2**64 - 1


def nested_objects(depth: int, leaf: Any = 1) -> Any:
    """``{"a": {"a": ... leaf}}`` with ``depth`` objects, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


async def answer(api: Api, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
    response = await api.client.request(method, path, headers=headers, **kwargs)
    return response.status, await response.json()


def refused_as_too_deep(status: int, body: Any) -> bool:
    return status == 400 and body["error"]["code"] == "too_deep" and body["error"]["field"] == "$"


async def test_hostile_nesting_is_refused_before_decoding_on_admin_routes(api: Api) -> None:
    # As deep as the 64 KiB body limit of the tests allows: far past any recursion limit.
    for raw in ("[" * 30_000 + "]" * 30_000, nested_json(10_000), "[" * 60_000):
        status, body = await answer(api, "POST", "/api/v1/keys", api.admin, data=raw)
        assert refused_as_too_deep(status, body), body
    # Nesting a recursive decoder still takes (a few hundred levels) used to be stored and sent on as an intent.
    group = {"name": "deep", "include": [{"email": nested_objects(MAX_JSON_DEPTH)}]}
    status, body = await answer(api, "POST", "/api/v1/access-groups", api.admin, json=group)
    assert refused_as_too_deep(status, body), body
    listed = await api.client.get("/api/v1/access-groups", headers=api.admin)
    assert [g for g in (await listed.json())["groups"] if not g["system"]] == []
    # Brackets inside strings do not nest; a real group well within the limit is taken.
    fine = {"name": "[[[[" * 20, "include": [{"email": {"email": "a@example.com"}}, {"saml": nested_objects(8, "]")}]}
    status, body = await answer(api, "POST", "/api/v1/access-groups", api.admin, json=fine)
    assert status == 201, body


async def test_hostile_nesting_is_refused_on_agent_routes(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    events = f"/api/v1/agents/{agent_id}/events"
    status, body = await answer(
        api, "POST", events, api.bearer(key), data='{"events":' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    assert refused_as_too_deep(status, body), body
    rule = {
        "hostname": "app.example.com",
        "service": "http://app:8080",
        "access": {"custom_rules": [{"decision": "allow", "include": [{"saml": nested_objects(MAX_JSON_DEPTH)}]}]},
    }
    event = {
        "type": "container_start",
        "agent_id": agent_id,
        "seq": 1,
        "container": {"container_id": "c1", "name": "c1", "rules": [rule]},
    }
    status, body = await answer(api, "POST", events, api.bearer(key), json={"events": [event]})
    assert refused_as_too_deep(status, body), body
    heartbeat = f"/api/v1/agents/{agent_id}/heartbeat"
    status, body = await answer(api, "POST", heartbeat, api.bearer(key), data='{"tunnel":' + nested_json(5000) + "}")
    assert refused_as_too_deep(status, body), body
    # The deepest body an honest agent sends (an inventory's rule with a custom policy's rule) passes.
    saml = {"saml": {"attribute_name": "group", "attribute_value": "x"}}
    rule["access"] = {"custom_rules": [{"decision": "allow", "include": [saml]}]}
    inventory = {
        "type": "inventory",
        "agent_id": agent_id,
        "seq": 1,
        "containers": [{"container_id": "c1", "name": "c1", "rules": [rule]}],
    }
    status, body = await answer(api, "POST", events, api.bearer(key), json={"events": [inventory]})
    assert status == 200 and body["accepted"] == 1, body


def nested_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def test_stream_ids_beyond_64_bits_are_refused_naming_the_field(api: Api) -> None:
    for after in ("99999999999999999999-0", f"0-{MAX_ID + 1}", "1-1\n", "1-"):
        status, body = await answer(api, "GET", "/api/v1/dead-letters", api.admin, params={"after": after})
        assert (status, body["error"]["field"]) == (422, "after"), (after, body)
    # The largest id is valid and nothing can follow it (Redis itself refuses an exclusive start past it).
    status, body = await answer(api, "GET", "/api/v1/dead-letters", api.admin, params={"after": f"{MAX_ID}-{MAX_ID}"})
    assert (status, body) == (200, {"dead_letters": [], "next_after": None})
    status, body = await answer(api, "POST", f"/api/v1/dead-letters/{MAX_ID + 1}-0/replay", api.admin)
    assert (status, body["error"]["code"], body["error"]["field"]) == (422, "invalid_id", "entry_id"), body
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    ack = f"/api/v1/agents/{agent_id}/commands/{MAX_ID + 1}-0/ack"
    status, body = await answer(api, "POST", ack, api.bearer(key), json={"ok": True})
    assert (status, body["error"]["code"], body["error"]["field"]) == (422, "invalid_id", "command_id"), body
    status, body = await answer(api, "POST", f"/api/v1/agents/{agent_id}/commands/{MAX_ID}-{MAX_ID}/ack",
                                api.bearer(key), json={"ok": True})  # fmt: skip
    assert (status, body["error"]["code"]) == (404, "unknown_command"), body


async def test_the_zone_filter_is_a_zone_name(api: Api) -> None:
    for zone in ("example.com\n", "not a zone", "*.example.com"):
        status, body = await answer(api, "GET", "/api/v1/rules", api.admin, params={"zone": zone})
        assert (status, body["error"]["field"]) == (422, "zone"), (zone, body)
    status, body = await answer(api, "GET", "/api/v1/rules", api.admin, params={"zone": "Example.COM"})
    assert (status, body) == (200, {"rules": []})


async def test_an_unexpected_error_is_a_json_500_without_detail(api: Api) -> None:
    secret = "internal-detail-4711"
    await api.redis.hset(api.keys.api_manual_rules, "mr_broken", f"not json {secret}")
    response = await api.client.get("/api/v1/manual-rules", headers=api.admin)
    text = await response.text()
    assert response.status == 500 and response.content_type == "application/json"
    assert json.loads(text) == {"error": {"code": "internal_error", "message": "internal error (logged)"}}
    for detail in (secret, "Traceback", "msgspec", "DecodeError", ".py"):
        assert detail not in text


async def test_readyz_tells_nothing_internal_when_redis_is_down(
    redis_factory: Callable[..., LocalRedis], tmp_path: Path
) -> None:
    server = redis_factory()
    log = tmp_path / "api.log"
    with api_process(server.url, "ready:", log) as api:
        async with aiohttp.ClientSession() as http:
            server.stop(kill=True)
            async with http.get(f"{api.url}/readyz") as response:
                status, text = response.status, await response.text()
    assert status == 503
    assert json.loads(text) == {"error": {"code": "redis_unavailable", "message": "Redis is not reachable"}}
    port = server.url.rsplit(":", 1)[1]
    for detail in (port, "127.0.0.1", "localhost", "redis://", "Error", "refused", "Connect"):
        assert detail not in text, detail
    assert "api.readyz_redis_unavailable" in log.read_text(), "the detail is logged instead"


async def test_query_numbers_are_plain_ascii_numbers(api: Api) -> None:
    # int() and float() alone take all of these: a full-width digit, digit grouping, NaN, infinity, exponents.
    for count in ("\uff11", "1_0", " 5", "5\n", "1e2", "0x10"):
        status, body = await answer(api, "GET", "/api/v1/dead-letters", api.admin, params={"count": count})
        assert (status, body["error"]["code"], body["error"]["field"]) == (422, "invalid_query", "count"), count
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    commands = f"/api/v1/agents/{agent_id}/commands"
    for wait in ("\uff10", "0_0", "nan", "-inf", "0\n", "1e-9"):
        status, body = await answer(api, "GET", commands, api.bearer(key), params={"wait": wait})
        assert (status, body["error"]["code"], body["error"]["field"]) == (422, "invalid_query", "wait"), wait
    for wait in ("0", "0.0", ".0", "+0"):
        status, body = await answer(api, "GET", commands, api.bearer(key), params={"wait": wait})
        assert (status, body) == (200, {"commands": []}), wait
    status, body = await answer(api, "GET", "/api/v1/dead-letters", api.admin, params={"count": "10"})
    assert status == 200, body


async def test_registration_and_heartbeat_texts_are_one_line_and_bounded(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    register = "/api/v1/agents/register"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"display_name": "a", "hostname": "docker-1\n"}, "hostname"),
        ({"display_name": "a", "version": "1.0\x1b[31m"}, "version"),
        ({"display_name": "a", "capabilities": ["tunnels", "x\n"]}, "capabilities[1]"),
        ({"display_name": "a", "capabilities": [""]}, "capabilities[0]"),
    ]
    for body, field in cases:
        status, error = await answer(api, "POST", register, api.bearer(key), json=body)
        assert (status, error["error"]["field"]) == (422, field), (body, error)
    heartbeat = f"/api/v1/agents/{agent_id}/heartbeat"
    cases = [
        ({"tunnel": {"container_state": "running\n"}}, "tunnel.container_state"),
        ({"tunnel": {"container_state": ""}}, "tunnel.container_state"),
        ({"tunnel": {"image": "cloudflared" * 200}}, "tunnel.image"),
        ({"tunnel": {"restarts": -1}}, "tunnel.restarts"),
        ({"tunnel": {"tunnel_id": "tun-1\n"}}, "tunnel.tunnel_id"),
        ({"agent_version": "1.2\n"}, "agent_version"),
    ]
    for body, field in cases:
        status, error = await answer(api, "POST", heartbeat, api.bearer(key), json=body)
        assert (status, error["error"]["field"]) == (422, field), (body, error)
    tunnel = {"container_state": "running", "image": "cloudflare/cloudflared:2025.1", "restarts": 2, "tunnel_id": "t1"}
    status, body = await answer(
        api, "POST", heartbeat, api.bearer(key), json={"tunnel": tunnel, "agent_version": "1.2"}
    )
    assert status == 200, body
