"""Every admin route in-process: keys, agents, rules and their filters, manual rules, access groups,
reconcile, dead letters, status, health and errors for unknown routes."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from flareport_common.messages import (
    AccessGroupDeleted,
    AccessGroupUpserted,
    AgentDecommissioned,
    AgentEnrolled,
    AgentRemoved,
    AgentRenamed,
    DeadLetter,
    IntentMessage,
    ManualRuleDeleted,
    ManualRuleUpserted,
    ReconcileRequested,
)
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.streams.codec import encode
from fptest.api_helpers import stream_messages

from .conftest import Api


async def call(api: Api, method: str, path: str, status: int, body: Any = None) -> Any:
    response = await api.client.request(method, path, json=body, headers=api.admin)
    assert response.status == status, (
        f"{method} {path}: expected {status}, got {response.status}: {await response.text()}"
    )
    return await response.json()


async def intents(api: Api) -> list[Any]:
    return await stream_messages(api.redis, api.keys.intents, IntentMessage)


async def test_keys_create_list_get_revoke_and_roll_rules(api: Api) -> None:
    created = await call(api, "POST", "/api/v1/keys", 201, {"label": "rack 4"})
    key_id = created["info"]["key_id"]
    assert created["key"].startswith("fpk_") and len(created["key"]) > 40
    listed = await call(api, "GET", "/api/v1/keys", 200)
    assert [(k["key_id"], k["label"], k["status"], k.get("agent_id")) for k in listed["keys"]] == [
        (key_id, "rack 4", "active", None)
    ]
    assert created["key"] not in str(listed), "the key is shown once, at creation"
    digest: Any = await api.redis.hget(api.keys.api_keys_index, key_id)
    stored: Any = await api.redis.hgetall(api.keys.api_key(digest.decode()))
    assert stored[b"hash"] == digest and created["key"].encode() not in b"".join(stored.values()), "only a hash"
    conflict = await call(api, "POST", f"/api/v1/keys/{key_id}/roll", 409)
    assert conflict["error"]["code"] == "not_rollable", "an unbound key has no agent to deliver a new key to"
    revoked = await call(api, "POST", f"/api/v1/keys/{key_id}/revoke", 200)
    assert revoked["status"] == "revoked"
    assert (await call(api, "GET", f"/api/v1/keys/{key_id}", 200))["status"] == "revoked"
    assert (await call(api, "GET", "/api/v1/keys/key_nope", 404))["error"]["code"] == "not_found"
    assert (await call(api, "POST", "/api/v1/keys", 422, {"label": " "}))["error"]["field"] == "label"


async def test_agents_list_detail_and_the_intents_they_send(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key, "web host"))["agent_id"]
    listed = await call(api, "GET", "/api/v1/agents", 200)
    assert [(a["agent_id"], a["display_name"], a["status"]) for a in listed["agents"]] == [
        (agent_id, "web host", "pending")
    ]
    assert (await call(api, "GET", "/api/v1/agents?status=active", 200))["agents"] == []
    detail = await call(api, "GET", f"/api/v1/agents/{agent_id}", 200)
    assert [k["agent_id"] for k in detail["keys"]] == [agent_id]

    await call(
        api,
        "POST",
        f"/api/v1/agents/{agent_id}/enroll",
        202,
        {"tunnel_id": "0f1e2d3c", "allowed_zones": ["Example.com"]},
    )
    await call(api, "POST", f"/api/v1/agents/{agent_id}/rename", 202, {"display_name": "web host 2"})
    await call(api, "POST", f"/api/v1/agents/{agent_id}/decommission", 202)
    sent = await intents(api)
    assert [type(i) for i in sent] == [AgentEnrolled, AgentRenamed, AgentDecommissioned]
    assert (sent[0].tunnel_id, sent[0].tunnel_name, sent[0].allowed_zones) == ("0f1e2d3c", None, ("example.com",))
    assert sent[1].display_name == "web host 2"

    both = await call(api, "POST", f"/api/v1/agents/{agent_id}/enroll", 422, {"tunnel_id": "a", "tunnel_name": "b"})
    assert both["error"]["field"] == "tunnel_id"
    await call(api, "POST", "/api/v1/agents/agt_unknown/enroll", 404, {})
    bad_zone = await call(api, "POST", f"/api/v1/agents/{agent_id}/enroll", 422, {"allowed_zones": ["not a zone"]})
    assert bad_zone["error"]["field"] == "allowed_zones[0]"
    assert len(await intents(api)) == 3, "rejected requests write no intent"


async def test_remove_refuses_an_active_agent_unless_forced_and_revokes_its_keys(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    record = AgentRecord(agent_id=agent_id, display_name="h", status="active")
    await api.redis.set(api.keys.agent(agent_id), msgspec.json.encode(record))
    await api.redis.sadd(api.keys.agents_index, agent_id)
    assert (await call(api, "GET", "/api/v1/agents", 200))["agents"][0]["status"] == "active"
    refused = await call(api, "DELETE", f"/api/v1/agents/{agent_id}", 409)
    assert refused["error"]["code"] == "agent_online"
    await call(api, "DELETE", f"/api/v1/agents/{agent_id}?force=true", 202)
    assert [type(i) for i in await intents(api)] == [AgentRemoved]
    heartbeat = await api.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json={}, headers=api.bearer(key))
    assert heartbeat.status == 401, "a removed agent's key no longer works"


async def test_rules_from_the_read_model_with_filters(api: Api) -> None:
    rules = [
        RuleRecord(key="a.example.com", hostname="a.example.com", service="http://a:80", agent_id="ag1",
                   zone_name="example.com", status="active"),
        RuleRecord(key="b.example.org/api", hostname="b.example.org", path="/api", service="http://b:80",
                   source="manual", manual_rule_id="mr1", zone_name="example.org", status="error", error="quota"),
    ]  # fmt: skip
    for rule in rules:
        await api.redis.set(api.keys.rule(rule.key), msgspec.json.encode(rule))
        await api.redis.sadd(api.keys.rules_index, rule.key)
    everything = await call(api, "GET", "/api/v1/rules", 200)
    assert [r["key"] for r in everything["rules"]] == ["a.example.com", "b.example.org/api"]

    async def keys_for(query: str) -> list[str]:
        return [r["key"] for r in (await call(api, "GET", f"/api/v1/rules?{query}", 200))["rules"]]

    assert await keys_for("status=error") == ["b.example.org/api"]
    assert await keys_for("source=container") == ["a.example.com"]
    assert await keys_for("agent_id=ag1") == ["a.example.com"]
    assert await keys_for("zone=example.org") == ["b.example.org/api"]
    assert await keys_for("q=b.ex") == ["b.example.org/api"]
    assert (await call(api, "GET", "/api/v1/rules?status=weird", 422))["error"]["field"] == "status"
    detail = await call(api, "GET", "/api/v1/rules/b.example.org", 200)
    assert [(r["path"], r["error"]) for r in detail["rules"]] == [("/api", "quota")]
    await call(api, "GET", "/api/v1/rules/c.example.org", 404)


async def test_manual_rules_crud_validation_and_intents(api: Api) -> None:
    body = {"rule": {"hostname": "App.Example.com", "service": "https://10.0.0.5:8443", "zone_name": "example.com"}}
    created = await call(api, "POST", "/api/v1/manual-rules", 201, body)
    rule_id = created["rule_id"]
    assert created["rule"]["hostname"] == "app.example.com"
    assert (await call(api, "GET", f"/api/v1/manual-rules/{rule_id}", 200))["rule_id"] == rule_id
    duplicate = await call(api, "POST", "/api/v1/manual-rules", 409, body)
    assert duplicate["error"]["code"] == "duplicate_rule"
    body["rule"]["service"] = "tcp://db.internal:5432"
    assert (await call(api, "PUT", f"/api/v1/manual-rules/{rule_id}", 200, body))["rule"]["service"].startswith("tcp")
    assert [r["rule_id"] for r in (await call(api, "GET", "/api/v1/manual-rules", 200))["rules"]] == [rule_id]
    await call(api, "DELETE", f"/api/v1/manual-rules/{rule_id}", 202)
    await call(api, "GET", f"/api/v1/manual-rules/{rule_id}", 404)
    await call(api, "PUT", f"/api/v1/manual-rules/{rule_id}", 404, body)
    sent = await intents(api)
    assert [type(i) for i in sent] == [ManualRuleUpserted, ManualRuleUpserted, ManualRuleDeleted]
    assert sent[0].rule.hostname == "app.example.com" and sent[1].rule.service == "tcp://db.internal:5432"


async def test_manual_rules_reject_bad_hostnames_and_services(api: Api) -> None:
    cases = [
        ({"hostname": "localhost", "service": "http://a"}, "rule.hostname"),
        ({"hostname": "-bad.example.com", "service": "http://a"}, "rule.hostname"),
        ({"hostname": "a.example.com", "service": "ftp://a"}, "rule.service"),
        ({"hostname": "a.example.com", "service": "tcp://db"}, "rule.service"),
        ({"hostname": "a.example.com", "service": "http://u:p@a"}, "rule.service"),
        ({"hostname": "a.example.com", "service": "http://a:99999"}, "rule.service"),
        ({"hostname": "a.example.com", "service": "http://a", "zone_name": "other.com"}, "rule.zone_name"),
        ({"hostname": "a.example.com", "service": "http://a", "bogus": 1}, "rule.bogus"),
        (
            {"hostname": "a.example.com", "service": "http://a", "origin": {"no_tls_verifyy": True}},
            "rule.origin.no_tls_verifyy",
        ),
        ({"hostname": "a.example.com", "service": "http://a", "access": {"polcy": "bypass"}}, "rule.access.polcy"),
        ({"hostname": "a.example.com"}, "rule.service"),
    ]
    for rule, field in cases:
        error = (await call(api, "POST", "/api/v1/manual-rules", 422, {"rule": rule}))["error"]
        assert error["field"] == field, f"{rule}: expected the error to name {field}, got {error}"
    assert await intents(api) == []


async def test_access_groups_crud(api: Api) -> None:
    body = {"name": "admins", "include": [{"email_domain": {"domain": "example.com"}}], "session_duration": "12h"}
    created = await call(api, "POST", "/api/v1/access-groups", 201, body)
    group_id = created["group_id"]
    body["decision"] = "deny"
    assert (await call(api, "PUT", f"/api/v1/access-groups/{group_id}", 200, body))["decision"] == "deny"
    listed = (await call(api, "GET", "/api/v1/access-groups", 200))["groups"]
    assert [g["name"] for g in listed if not g["system"]] == ["admins"]
    assert (await call(api, "GET", f"/api/v1/access-groups/{group_id}", 200))["decision"] == "deny"
    bad = await call(api, "POST", "/api/v1/access-groups", 422, {"name": "x", "session_duration": "forever"})
    assert bad["error"]["field"] == "session_duration"
    await call(api, "DELETE", f"/api/v1/access-groups/{group_id}", 202)
    await call(api, "DELETE", f"/api/v1/access-groups/{group_id}", 404)
    assert [type(i) for i in await intents(api)] == [AccessGroupUpserted, AccessGroupUpserted, AccessGroupDeleted]


async def test_reconcile_dead_letters_replay_and_status(api: Api) -> None:
    await call(api, "POST", "/api/v1/reconcile", 202, {"scope": "zone:example.com"})
    assert (await call(api, "POST", "/api/v1/reconcile", 422, {"scope": "rm -rf"}))["error"]["field"] == "scope"
    assert [(type(i), i.scope) for i in await intents(api)] == [(ReconcileRequested, "zone:example.com")]

    letter = DeadLetter(
        source_stream=api.keys.cf_jobs, source_id="1-0", group="dns-worker", consumer="w1",
        reason="permanent_error", error="boom", deliveries=5, payload={"m": '{"type":"x"}'},
    )  # fmt: skip
    await api.redis.xadd(api.keys.dead_letters, encode(letter))  # type: ignore[arg-type]
    listed = (await call(api, "GET", "/api/v1/dead-letters", 200))["dead_letters"]
    assert [(d["source_stream"], d["error"]) for d in listed] == [(api.keys.cf_jobs, "boom")]
    replayed = await call(api, "POST", f"/api/v1/dead-letters/{listed[0]['entry_id']}/replay", 200)
    assert replayed["source_stream"] == api.keys.cf_jobs
    assert [fields for _, fields in await api.redis.xrange(api.keys.cf_jobs) or []] == [{b"m": b'{"type":"x"}'}]
    assert (await call(api, "GET", "/api/v1/dead-letters", 200))["dead_letters"] == []
    await call(api, "POST", f"/api/v1/dead-letters/{listed[0]['entry_id']}/replay", 404)
    forged = msgspec.structs.replace(letter, source_stream="someone-else:stream")
    forged_id: Any = await api.redis.xadd(api.keys.dead_letters, encode(forged))  # type: ignore[arg-type]
    forged_id = forged_id.decode()
    refused = await call(api, "POST", f"/api/v1/dead-letters/{forged_id}/replay", 409)
    assert refused["error"]["code"] == "foreign_stream"
    assert not await api.redis.exists("someone-else:stream"), "a forged dead letter cannot make the API write elsewhere"
    await api.redis.xdel(api.keys.dead_letters, forged_id)

    await api.redis.xgroup_create(api.keys.cf_jobs, "dns-worker", id="0")
    status = await call(api, "GET", "/api/v1/status", 200)
    jobs = next(s for s in status["streams"] if s["stream"] == api.keys.cf_jobs)
    assert (jobs["length"], [(g["name"], g["lag"]) for g in jobs["groups"]]) == (1, [("dns-worker", 1)])
    assert status["cloudflare_paused_until"] is None
    await api.redis.hset(api.keys.cf_rate_bucket, mapping={"tokens": "17.5", "at": "1700000000000"})
    await api.redis.set(api.keys.cf_pause_until, str(int((time.time() + 30) * 1000)))
    status = await call(api, "GET", "/api/v1/status", 200)
    assert (status["cloudflare_tokens"], status["cloudflare_tokens_at"]) == (17.5, "2023-11-14T22:13:20Z")
    assert status["cloudflare_paused_until"] is not None, "a Cloudflare 429 pause in force is shown"
    assert (status["cloudflare_left"], status["cloudflare_resets_at"]) == (None, None), "no standing read yet"
    resets = int((time.time() + 60) * 1000)
    await api.redis.hset(api.keys.cf_rate_standing, mapping={"left": "42", "until": str(resets)})
    status = await call(api, "GET", "/api/v1/status", 200)
    assert status["cloudflare_left"] == 42 and status["cloudflare_resets_at"] is not None, "Cloudflare's count is shown"
    await api.redis.hset(api.keys.cf_rate_standing, mapping={"left": "42", "until": str(resets - 120_000)})
    status = await call(api, "GET", "/api/v1/status", 200)
    assert status["cloudflare_left"] is None, "a standing whose window has reset says nothing"


async def test_health_metrics_and_errors_for_unknown_routes(api: Api) -> None:
    assert (await (await api.client.get("/healthz")).json())["status"] == "ok"
    assert (await (await api.client.get("/readyz")).json())["status"] == "ok"
    await api.client.get("/api/v1/keys", headers=api.admin)
    metrics = await (await api.client.get("/metrics")).text()
    assert 'flareport_api_requests_total{route="/api/v1/keys",status="200"}' in metrics
    missing = await api.client.get("/api/v1/nothing-here")
    assert (missing.status, (await missing.json())["error"]["code"]) == (404, "not_found")
    wrong = await api.client.patch("/api/v1/keys", headers=api.admin)
    assert (wrong.status, (await wrong.json())["error"]["code"]) == (405, "method_not_allowed")
    no_auth = await api.client.get("/api/v1/agents")
    assert (no_auth.status, (await no_auth.json())["error"]["code"]) == (401, "missing_key")
