"""Validation matches whole values: a trailing newline (which ``$`` lets through) is refused naming the field.

A manual rule was once stored with hostname ``"name\\n"``, and ids with a newline reached Redis key names.
"""

from __future__ import annotations

from typing import Any

from .conftest import Api


async def answer(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    response = await api.client.request(method, path, json=body, headers=headers)
    return response.status, await response.json()


async def test_a_manual_rule_with_a_newline_after_its_hostname_is_refused(api: Api) -> None:
    body = {"rule": {"hostname": "app.example.com\n", "service": "http://app:8080"}}
    status, error = await answer(api, "POST", "/api/v1/manual-rules", body, api.admin)
    assert (status, error["error"]["field"]) == (422, "rule.hostname"), error
    listed = await api.client.get("/api/v1/manual-rules", headers=api.admin)
    assert (await listed.json())["rules"] == []
    # The same rule without the newline is taken: the refusal above is the hostname's, not the body's shape.
    body["rule"]["hostname"] = "app.example.com"
    status, created = await answer(api, "POST", "/api/v1/manual-rules", body, api.admin)
    assert status == 201, created
    rule_id = created["rule_id"]
    body["rule"]["hostname"] = "app.example.com\n"
    status, error = await answer(api, "PUT", f"/api/v1/manual-rules/{rule_id}", body, api.admin)
    assert (status, error["error"]["field"]) == (422, "rule.hostname"), error


async def test_ids_with_a_trailing_newline_are_refused_before_they_reach_redis(api: Api) -> None:
    for path in (
        "/api/v1/agents/agt-1%0A",
        "/api/v1/keys/key_0123456789abcdef%0A",
        "/api/v1/access-groups/g1%0A",
        "/api/v1/manual-rules/mr_1%0A",
        "/api/v1/dead-letters/1-0%0A/replay",
    ):
        method = "POST" if path.endswith("/replay") else "GET"
        status, error = await answer(api, method, path, None, api.admin)
        assert status == 422 and error["error"]["code"] == "invalid_id", (path, error)


async def test_an_agent_rule_with_a_newline_after_its_hostname_is_refused(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    rule = {"hostname": "app.example.com\n", "service": "http://app:8080"}
    event = {
        "type": "container_start",
        "agent_id": agent_id,
        "seq": 1,
        "container": {"container_id": "c1", "name": "c1", "rules": [rule]},
    }
    status, error = await answer(api, "POST", f"/api/v1/agents/{agent_id}/events", {"events": [event]}, api.bearer(key))
    assert status == 422 and error["error"]["field"] == "events[0].container.rules[0].hostname", error
