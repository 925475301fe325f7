"""The admin's publishing policy of one agent (allow-lists, wildcard and apex flags, allowed origin kinds): set at
enrolment, changed later with ``PATCH /api/v1/agents/{id}/policy``, strictly validated, and out of an agent's
reach — an agent key cannot widen its own policy."""

from __future__ import annotations

from typing import Any

import msgspec

from flareport_common.messages import AgentEnrolled, AgentPolicyChanged, IntentMessage
from flareport_common.readmodel import AgentRecord
from fptest.api_helpers import stream_messages

from .conftest import Api


async def call(api: Api, method: str, path: str, status: int, body: Any = None, headers: Any = None) -> Any:
    response = await api.client.request(method, path, json=body, headers=api.admin if headers is None else headers)
    assert response.status == status, (
        f"{method} {path}: expected {status}, got {response.status}: {await response.text()}"
    )
    return await response.json()


async def intents(api: Api) -> list[Any]:
    return await stream_messages(api.redis, api.keys.intents, IntentMessage)


async def test_enrolment_carries_the_policy(api: Api) -> None:
    agent_id = (await api.register(await api.new_key()))["agent_id"]
    body = {"allowed_zones": ["example.com"], "allow_wildcard": True, "origin_allow": ["unix", "metadata", "unix"]}
    await call(api, "POST", f"/api/v1/agents/{agent_id}/enroll", 202, body)
    [enrolled] = await intents(api)
    assert isinstance(enrolled, AgentEnrolled)
    assert (enrolled.allowed_zones, enrolled.allow_wildcard, enrolled.allow_apex, enrolled.origin_allow) == (
        ("example.com",),
        True,
        False,
        ("metadata", "unix"),
    )
    refused = await call(api, "POST", f"/api/v1/agents/{agent_id}/enroll", 422, {"origin_allow": ["everything"]})
    assert refused["error"]["field"] == "origin_allow[0]"
    assert "link-local, metadata, unix, bastion" in refused["error"]["message"]


async def test_a_policy_change_keeps_what_it_does_not_name(api: Api) -> None:
    agent_id = (await api.register(await api.new_key()))["agent_id"]
    record = AgentRecord(
        agent_id=agent_id, display_name="h", status="active", allowed_zones=("example.com",), allow_apex=True
    )
    await api.redis.set(api.keys.agent(agent_id), msgspec.json.encode(record))
    await api.redis.sadd(api.keys.agents_index, agent_id)

    await call(api, "PATCH", f"/api/v1/agents/{agent_id}/policy", 202, {"origin_allow": ["metadata"]})
    await call(api, "PATCH", f"/api/v1/agents/{agent_id}/policy", 202, {"allowed_suffixes": [".dev.example.org"]})
    first, second = await intents(api)
    assert first == AgentPolicyChanged(
        id=first.id,
        occurred_at=first.occurred_at,
        agent_id=agent_id,
        allowed_zones=("example.com",),
        allow_apex=True,
        origin_allow=("metadata",),
    )
    assert (second.allowed_zones, second.allowed_suffixes, second.allow_apex) == (
        ("example.com",),
        ("dev.example.org",),
        True,
    )
    detail = await call(api, "GET", f"/api/v1/agents/{agent_id}", 200)
    assert (detail["agent"]["allow_wildcard"], detail["agent"]["allow_apex"]) == (False, True)


async def test_bad_policies_are_refused_naming_the_field(api: Api) -> None:
    agent_id = (await api.register(await api.new_key()))["agent_id"]
    path = f"/api/v1/agents/{agent_id}/policy"
    cases: list[tuple[Any, str]] = [
        ({"origin_allow": ["metadata", "root"]}, "origin_allow[1]"),
        ({"allowed_zones": ["example.com", "not a zone"]}, "allowed_zones[1]"),
        ({"allowed_suffixes": ["*.example.com"]}, "allowed_suffixes[0]"),
        ({"allowed_zones": [f"z{i}.example.com" for i in range(257)]}, "allowed_zones"),
        ({"allow_wildcard": "yes"}, "allow_wildcard"),
        ({"origin_allow": "metadata"}, "origin_allow"),
        ({"adopt": True}, "adopt"),
        ({}, "$"),
    ]
    for body, field in cases:
        refused = await call(api, "PATCH", path, 422, body)
        assert refused["error"]["field"] == field, (body, refused)
    await call(api, "PATCH", "/api/v1/agents/agt_unknown/policy", 404, {"allow_apex": True})
    assert await intents(api) == [], "a refused request writes no intent"


async def test_an_agent_key_cannot_change_its_own_policy(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    widen = {"allowed_zones": [], "allow_wildcard": True, "allow_apex": True, "origin_allow": ["metadata", "unix"]}
    # An agent key is no admin key: refused like any wrong key, before the body is even read.
    await call(api, "PATCH", f"/api/v1/agents/{agent_id}/policy", 401, widen, headers=api.bearer(key))
    await call(api, "POST", f"/api/v1/agents/{agent_id}/enroll", 401, widen, headers=api.bearer(key))
    assert await intents(api) == [], "nothing reaches the reconciler"
