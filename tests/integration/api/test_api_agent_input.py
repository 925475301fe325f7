"""Hand-made event batches with an agent key, as a stolen key would send them: every rule checked like an
admin's, admin-only fields refused, size quotas refused with 413 naming the limit and recorded for the agent's
page. A refused batch adds nothing to the events stream."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from flareport_agent.client import MasterClient, RequestRejected
from flareport_api.quotas import QuotaRefusal
from flareport_cli.localredis import LocalRedis
from flareport_common.messages import EventMessage
from flareport_common.messages.events import ContainerStart, Inventory
from flareport_common.messages.rules import ContainerInfo, Rule
from flareport_common.settings import AgentQuotas, ApiSettings
from fptest.api_helpers import stream_messages, tag

from .conftest import Api, make_settings

QUOTAS = AgentQuotas(containers=5, rules_per_container=3, hostnames=6, label_errors_per_container=4,
                     label_error_bytes=200)  # fmt: skip


@pytest.fixture
def api_settings(redis_server: LocalRedis, prefix: str) -> ApiSettings:
    return make_settings(redis_server.url, prefix, quotas=QUOTAS)


def rule(host: str, **fields: Any) -> dict[str, Any]:
    return {"hostname": host, "service": "http://web:80", **fields}


def container(*rules: dict[str, Any], cid: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"container_id": cid, "name": "web", "rules": list(rules), **fields}


def start(seq: int, info: dict[str, Any]) -> dict[str, Any]:
    return {"type": "container_start", "agent_id": "x", "seq": seq, "container": info}


def inventory(seq: int, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"type": "inventory", "agent_id": "x", "seq": seq, "containers": list(containers)}


async def enrolled(api: Api) -> tuple[str, str]:
    key = await api.new_key()
    return key, (await api.register(key))["agent_id"]


async def post(api: Api, key: str, agent_id: str, events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/events", json={"events": events}, headers=api.bearer(key)
    )
    body: dict[str, Any] = await response.json()
    return response.status, body


async def container_events(api: Api) -> list[Any]:
    messages = await stream_messages(api.redis, api.keys.events, EventMessage)
    return [m for m in messages if tag(m) in ("container_start", "inventory")]


async def test_adopt_from_an_agent_is_refused_naming_the_field(api: Api) -> None:
    key, agent_id = await enrolled(api)
    status, body = await post(api, key, agent_id, [start(1, container(rule("apex.example.com", adopt=True)))])
    assert status == 422
    assert body["error"]["field"] == "events[0].container.rules[0].adopt"
    assert "only an admin may adopt" in body["error"]["message"]
    assert await container_events(api) == [], "a refused batch adds nothing"


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([start(1, container(rule("bad_name.example.com")))], "events[0].container.rules[0].hostname"),
        ([start(1, container(rule("a.example.com", service="http://169.254.169.254/latest/meta-data")))],
         "events[0].container.rules[0].service"),
        ([start(1, container(rule("pwn.victim.test", zone_name="example.test")))],
         "events[0].container.rules[0].zone_name"),
        ([inventory(1, container(), container(rule("a.example.com", access={"custom_rules": [{"claimed_at": 0}]}),
                                              cid="c2"))],
         "events[0].containers[1].rules[0].access.custom_rules[0]"),
        ([start(1, container(rule("a.example.com", access={"groups": [f"g{i}" for i in range(51)]})))],
         "events[0].container.rules[0].access.groups"),
        ([start(1, container(rule("a.example.com",
                                  access={"custom_rules": [{"decision": "allow",
                                                            "include": [{"email": {"email": "x" * 10_000}}]}]})))],
         "events[0].container.rules[0].access.custom_rules"),
        ([start(1, container(name="web\n2026-01-01 forged log line"))], "events[0].container.name"),
    ],
)  # fmt: skip
async def test_invalid_agent_rules_are_refused_naming_the_field(
    api: Api, events: list[dict[str, Any]], field: str
) -> None:
    key, agent_id = await enrolled(api)
    status, body = await post(api, key, agent_id, events)
    assert (status, body["error"]["code"], body["error"]["field"]) == (422, "invalid_body", field)
    assert await container_events(api) == []


async def test_a_deeply_nested_custom_rule_is_a_4xx_not_a_500(api: Api) -> None:
    key, agent_id = await enrolled(api)
    nested = '{"saml":' * 5000 + "{}" + "}" * 5000
    raw = '{"events":[' + msgspec.json.encode(start(1, container(rule("a.example.com")))).decode()
    raw = raw.replace(
        '"service":"http://web:80"',
        '"service":"http://web:80","access":{"custom_rules":[{"decision":"allow","include":[' + nested + "]}]}",
    )
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/events",
        data=raw + "]}",
        headers={**api.bearer(key), "Content-Type": "application/json"},
    )
    assert 400 <= response.status < 500, await response.text()
    assert (await response.json())["error"]["field"]


@pytest.mark.parametrize(
    ("events", "limit"),
    [
        ([inventory(1, *(container(cid=f"c{i}") for i in range(6)))], "containers"),
        ([start(1, container(*(rule(f"h{i}.example.com") for i in range(4))))], "rules_per_container"),
        ([start(1, container(errors=[{"label": f"l{i}", "reason": "bad"} for i in range(5)]))], "label_errors"),
        ([inventory(1, *(container(rule(f"a{i}.example.com"), rule(f"b{i}.example.com"), cid=f"c{i}")
                         for i in range(4)))], "hostnames"),
        ([start(i + 1, container(rule(f"h{i}.example.com"), cid=f"c{i}")) for i in range(7)], "hostnames"),
    ],
)  # fmt: skip
async def test_size_quotas_answer_413_naming_the_limit_and_are_recorded(
    api: Api, events: list[dict[str, Any]], limit: str
) -> None:
    key, agent_id = await enrolled(api)
    status, body = await post(api, key, agent_id, events)
    assert (status, body["error"]["code"], body["error"]["field"]) == (413, "quota_exceeded", limit)
    recorded = await api.redis.hget(api.keys.agent_quota_refusals(agent_id), limit)
    assert recorded is not None, "the refusal is visible on the agent's page"
    refusal = msgspec.json.decode(recorded, type=QuotaRefusal)
    assert (refusal.limit, refusal.status) == (limit, 413)
    assert await container_events(api) == []


async def test_an_over_long_label_error_is_stored_cut_and_the_rest_accepted(api: Api) -> None:
    key, agent_id = await enrolled(api)
    long = {"label": "flareport.access.custom_rules", "reason": "is not valid JSON: " + "x" * 7_000_000}
    status, body = await post(api, key, agent_id, [start(1, container(rule("a.example.com"), errors=[long]))])
    assert status == 413, "a 7 MB error does not even fit the events body limit"
    long["reason"] = "is not valid JSON: " + "x" * 5000
    status, body = await post(api, key, agent_id, [start(1, container(rule("a.example.com"), errors=[long]))])
    assert (status, body["accepted"]) == (200, 1)
    [stored] = await container_events(api)
    [error] = stored.container.errors
    assert error.label == long["label"] and error.reason.endswith("[truncated]")
    assert len(error.label.encode()) + len(error.reason.encode()) <= QUOTAS.label_error_bytes
    assert [r.hostname for r in stored.container.rules] == ["a.example.com"]


async def test_an_honest_batch_still_passes_with_names_normalised(api: Api) -> None:
    key, agent_id = await enrolled(api)
    events = [start(1, container(rule("App.Example.com", zone_name="Example.COM", path="/api",
                                      access={"policy": "custom", "groups": ["admins"],
                                              "custom_rules": [{"decision": "allow", "include": [
                                                  {"email_domain": {"domain": "example.com"}}]}]}))),
              {"type": "container_stop", "agent_id": "x", "seq": 2, "container_id": "c1", "name": "web"}]  # fmt: skip
    status, body = await post(api, key, agent_id, events)
    assert (status, body["accepted"]) == (200, 2)
    [stored] = await container_events(api)
    assert (stored.container.rules[0].hostname, stored.container.rules[0].zone_name) == (
        "app.example.com",
        "example.com",
    )


async def test_the_agents_client_learns_the_refused_field_and_limit(api: Api) -> None:
    key, agent_id = await enrolled(api)
    client = MasterClient(str(api.client.make_url("")), key)
    client.agent_id = agent_id
    adopting = Rule(hostname="a.example.com", service="http://web:80", adopt=True)
    adopt = ContainerStart(
        agent_id=agent_id, seq=1, container=ContainerInfo(container_id="c1", name="web", rules=(adopting,))
    )
    containers = tuple(ContainerInfo(container_id=f"c{i}", name="web") for i in range(QUOTAS.containers + 1))
    too_many = Inventory(agent_id=agent_id, seq=2, containers=containers)
    try:
        with pytest.raises(RequestRejected) as refused:
            await client.send_events((adopt,))
        assert (refused.value.status, refused.value.field) == (422, "events[0].container.rules[0].adopt")
        with pytest.raises(RequestRejected) as over:
            await client.send_events((too_many,))
        assert (over.value.status, over.value.code, over.value.field) == (413, "quota_exceeded", "containers")
    finally:
        await client.close()


async def test_the_batchs_starting_hint_is_bounded_and_replaces_what_events_claim(api: Api) -> None:
    key, agent_id = await enrolled(api)
    url = f"/api/v1/agents/{agent_id}/events"
    for bad in (-1, 100_001, "3", 1.5):
        response = await api.client.post(
            url, json={"events": [start(1, container(rule("a.example.com")))], "starting": bad},
            headers=api.bearer(key),
        )  # fmt: skip
        body = await response.json()
        assert (response.status, body["error"]["field"]) == (422, "starting"), bad
    assert await container_events(api) == [], "a refused batch adds nothing"
    # An event's own value is never taken: the batch's word (or none) is what the reconciler sees.
    claimed = {**start(1, container(rule("a.example.com"))), "starting": 99}
    response = await api.client.post(url, json={"events": [claimed], "starting": 2}, headers=api.bearer(key))
    assert response.status == 200
    second = {**start(2, container(rule("b.example.com"), cid="c2")), "starting": 99}
    response = await api.client.post(url, json={"events": [second]}, headers=api.bearer(key))
    assert response.status == 200
    assert [e.starting for e in await container_events(api)] == [2, None]
