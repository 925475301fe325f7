"""``PUT /api/v1/rules/{hostname}/override`` and ``POST .../revert``: admin only, for a container rule only, checked
like a manual rule (422 naming the field), stored with its intent; a refusal stores and sends nothing."""

from __future__ import annotations

from typing import Any

import msgspec

from flareport_common.messages.intents import IntentMessage, RuleOverrideCleared, RuleOverrideSet
from flareport_common.messages.rules import AccessSpec, OriginOptions, RuleOverride
from flareport_common.readmodel import RuleRecord
from fptest.api_helpers import stream_messages

from .conftest import Api

RULES = [
    RuleRecord(key="app.example.com", hostname="app.example.com", service="http://a:80", agent_id="ag1",
               status="active"),
    RuleRecord(key="app.example.com/api", hostname="app.example.com", path="/api", service="http://a:80",
               source="manual", manual_rule_id="mr_1", status="active"),
]  # fmt: skip
URL = "/api/v1/rules/app.example.com"


async def call(api: Api, method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    response = await api.client.request(method, path, json=body, headers=api.admin if headers is None else headers)
    assert response.status == status, f"{method} {path} {body}: expected {status}: {await response.text()}"
    return await response.json()


async def test_override_and_revert_of_a_container_rule(api: Api) -> None:
    for rule in RULES:
        await api.redis.set(api.keys.rule(rule.key), msgspec.json.encode(rule))
        await api.redis.sadd(api.keys.rules_index, rule.key)

    refusals = [
        ({}, 422, "$"),
        ({"service": "ftp://nope"}, 422, "service"),
        ({"origin": {"origin_server_name": "a b"}}, 422, "origin.origin_server_name"),
        ({"access": {"session_duration": "forever"}}, 422, "access.session_duration"),
        ({"service": "http://b:80", "adopt": True}, 422, "adopt"),
        ({"path": "/api", "service": "http://b:80"}, 409, "path"),  # a manual rule: edited directly
        ({"path": "/nothing", "service": "http://b:80"}, 404, None),
    ]
    for body, status, field in refusals:
        error = (await call(api, "PUT", URL + "/override", status, body))["error"]
        assert error.get("field") == field, (body, error)
    agent_key = await api.new_key()
    await api.register(agent_key)
    await call(api, "PUT", URL + "/override", 401, {"service": "http://b:80"}, api.bearer(agent_key))
    await call(api, "POST", URL + "/revert", 401, {}, api.bearer(agent_key))
    await call(api, "POST", URL + "/revert", 404, {})  # nothing to revert yet
    assert await stream_messages(api.redis, api.keys.intents, IntentMessage) == []
    assert await api.redis.hlen(api.keys.api_rule_overrides) == 0

    body = {"service": "https://b:8443", "origin": {"no_tls_verify": True}, "access": {}}
    await call(api, "PUT", URL + "/override", 202, body)
    await call(api, "POST", URL + "/revert", 202, {})
    set_, cleared = await stream_messages(api.redis, api.keys.intents, IntentMessage)
    assert isinstance(set_, RuleOverrideSet) and isinstance(cleared, RuleOverrideCleared)
    assert (set_.hostname, set_.path, set_.override) == (
        "app.example.com",
        None,
        RuleOverride(service="https://b:8443", origin=OriginOptions(no_tls_verify=True), access=AccessSpec()),
    )
    assert (cleared.hostname, cleared.path) == ("app.example.com", None)
    assert await api.redis.hlen(api.keys.api_rule_overrides) == 0, "reverted: nothing kept"
    audit = (await (await api.client.get("/api/v1/audit", headers=api.admin)).json())["entries"]
    assert [(e["actor"], e["action"], e["target"], e["intent_id"]) for e in audit] == [
        ("api", "rule_override_cleared", "app.example.com", cleared.id),
        ("api", "rule_override_set", "app.example.com", set_.id),
    ], "who overrode and reverted the rule, newest first; refusals recorded nothing"
