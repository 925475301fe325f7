"""``POST /api/v1/rules/{hostname}/force-delete``: admin only, only for a rule in ``pending_deletion``, recorded in
the audit list (``GET /api/v1/audit``) with its intent; a refusal records and sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from flareport_common.messages.intents import IntentMessage, RuleForceDeleted
from flareport_common.readmodel import RuleRecord
from fptest.api_helpers import stream_messages

from .conftest import Api

RULES = [
    RuleRecord(key="old.example.com/api", hostname="old.example.com", path="/api", service="http://a:80",
               agent_id="ag1", status="pending_deletion", delete_at=datetime(2030, 1, 1, tzinfo=UTC)),
    RuleRecord(key="old.example.com", hostname="old.example.com", service="http://a:80", agent_id="ag1",
               status="active"),
]  # fmt: skip


async def call(api: Api, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    response = await api.client.post(path, json=body, headers=api.admin if headers is None else headers)
    assert response.status == status, (
        f"{path} {body}: expected {status}, got {response.status}: {await response.text()}"
    )
    return await response.json()


async def test_force_delete_is_audited_and_refused_unless_pending_deletion(api: Api) -> None:
    for rule in RULES:
        await api.redis.set(api.keys.rule(rule.key), msgspec.json.encode(rule))
        await api.redis.sadd(api.keys.rules_index, rule.key)
    url = "/api/v1/rules/old.example.com/force-delete"

    refusals = [
        ({}, 409, "not_pending_deletion", "hostname"),  # the rule without a path is active
        ({"path": "/other"}, 404, "not_found", None),
        ({"path": "/a b"}, 422, "invalid_body", "path"),
        ({"path": "/api", "force": True}, 422, "invalid_body", "force"),
    ]
    for body, status, code, field in refusals:
        error = (await call(api, url, status, body))["error"]
        assert (error["code"], error.get("field")) == (code, field), body
    agent_key = await api.new_key()
    await api.register(agent_key)
    assert (await call(api, url, 401, {"path": "/api"}, api.bearer(agent_key)))["error"]["code"] == "invalid_key"
    assert (await call(api, url, 401, {"path": "/api"}, {}))["error"]["code"] == "missing_key"
    audit = await api.client.get("/api/v1/audit", headers=api.admin)
    assert (await audit.json())["entries"] == [] and await stream_messages(
        api.redis, api.keys.intents, IntentMessage
    ) == []

    accepted = await call(api, url, 202, {"path": "/api"})
    [intent] = await stream_messages(api.redis, api.keys.intents, IntentMessage)
    assert intent == RuleForceDeleted(
        id=accepted["intent_id"], occurred_at=intent.occurred_at, hostname="old.example.com", path="/api",
        requested_by="api",
    )  # fmt: skip
    [entry] = (await (await api.client.get("/api/v1/audit?count=5", headers=api.admin)).json())["entries"]
    assert {k: entry[k] for k in ("actor", "action", "target", "intent_id")} == {
        "actor": "api",
        "action": "rule_force_deleted",
        "target": "old.example.com/api",
        "intent_id": accepted["intent_id"],
    }
    assert (await api.client.get("/api/v1/audit", headers=api.bearer(agent_key))).status == 401
    assert (await api.client.get("/api/v1/audit?count=0", headers=api.admin)).status == 422
