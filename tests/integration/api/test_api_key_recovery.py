"""A total loss of Redis data does not lock the agents out: keys this API issued are recognised by their proof,
restored bound to the same agent, and the agent is told to register again at once (issue 7/8: rebuild after a
loss). Revocation still works while Redis has the record; a forged key or recovery turned off gets 401.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import msgspec
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api import longpoll
from flareport_api.app import create_app
from flareport_common.messages import EventMessage, IntentMessage, KeyRolled
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ApiSettings
from fptest.api_helpers import stream_messages, tag
from fptest.waiting import wait_for

from .conftest import Api


async def lose_everything(redis: aioredis.Redis, prefix: str) -> None:
    """What FLUSHALL does to this test's data (the session's redis-server is shared with other tests)."""
    names = [name async for name in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if names:
        await redis.delete(*names)


async def heartbeat(api: Api, key: str, agent_id: str) -> Any:
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/heartbeat", json={"docker_reachable": True}, headers=api.bearer(key)
    )
    return response.status, await response.json()


async def test_a_key_lost_with_the_data_is_restored_for_the_same_agent(api: Api, prefix: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await lose_everything(api.redis, prefix)

    status, body = await heartbeat(api, key, agent_id)
    assert status == 200, f"the agent's own key still works after the loss: {body}"
    assert body["reregister"] is True, "the reconciler has no record of it: register again at once"
    assert (await api.register(key))["agent_id"] == agent_id, "registering again keeps the agent's identity"
    assert (await heartbeat(api, key, agent_id))[1]["reregister"] is False, "registered: no need to say it again"
    assert await api.redis.get(api.keys.keys_recovered_at) is not None, "the loss is recorded for the reconciler"
    keys = (await (await api.client.get("/api/v1/keys", headers=api.admin)).json())["keys"]
    assert [(k["agent_id"], k["status"]) for k in keys] == [(agent_id, "active")]


async def test_a_rolled_key_is_restored_bound_to_its_agent(api: Api, prefix: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    key_id = (await (await api.client.get("/api/v1/keys", headers=api.admin)).json())["keys"][0]["key_id"]
    response = await api.client.post(f"/api/v1/keys/{key_id}/roll", headers=api.admin)
    assert response.status in (200, 201, 202), await response.text()
    intents = await stream_messages(api.redis, api.keys.intents, IntentMessage)
    ref = next(i.secret_ref for i in intents if isinstance(i, KeyRolled))
    assert ref is not None
    raw: Any = await api.redis.get(api.keys.agent_secret(agent_id, ref))
    new_key = raw.decode()  # what the agent would receive
    await lose_everything(api.redis, prefix)
    status, body = await heartbeat(api, new_key, agent_id)
    assert status == 200, body


async def test_a_revoked_key_stays_revoked_while_its_record_exists(api: Api) -> None:
    key = await api.new_key()
    await api.register(key)
    key_id = (await (await api.client.get("/api/v1/keys", headers=api.admin)).json())["keys"][0]["key_id"]
    revoked = await api.client.post(f"/api/v1/keys/{key_id}/revoke", headers=api.admin)
    assert revoked.status in (200, 204), await revoked.text()
    response = await api.client.post("/api/v1/agents/register", json={"display_name": "x"}, headers=api.bearer(key))
    assert (response.status, (await response.json())["error"]["code"]) == (401, "key_revoked")


async def test_a_forged_key_is_refused_and_leaves_nothing(api: Api, prefix: str) -> None:
    key = await api.new_key()
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    response = await api.client.post("/api/v1/agents/register", json={"display_name": "x"}, headers=api.bearer(forged))
    assert (response.status, (await response.json())["error"]["code"]) == (401, "unknown_key")
    assert await api.redis.get(api.keys.keys_recovered_at) is None


async def test_with_recovery_off_a_lost_key_is_refused(api_settings: ApiSettings, api: Api, prefix: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await lose_everything(api.redis, prefix)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(replace(api_settings, agent_key_recovery=False))))
    await client.start_server()
    try:
        response = await client.post(
            f"/api/v1/agents/{agent_id}/heartbeat", json={"docker_reachable": True}, headers=api.bearer(key)
        )
        assert response.status == 401
    finally:
        await client.close()


async def test_a_key_listed_as_revoked_in_the_configuration_stays_refused_after_the_loss(
    api_settings: ApiSettings, api: Api, prefix: str
) -> None:
    key, other = await api.new_key(), await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    other_agent = (await api.register(other))["agent_id"]
    listed = await (await api.client.get("/api/v1/keys", headers=api.admin)).json()
    key_id = next(k["key_id"] for k in listed["keys"] if k["agent_id"] == agent_id)
    await api.client.post(f"/api/v1/keys/{key_id}/revoke", headers=api.admin)
    await lose_everything(api.redis, prefix)

    configured = replace(api_settings, revoked_agent_keys=frozenset({key_id}))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(configured)))
    await client.start_server()
    try:
        refused = await client.post(
            f"/api/v1/agents/{agent_id}/heartbeat", json={"docker_reachable": True}, headers=api.bearer(key)
        )
        assert (refused.status, (await refused.json())["error"]["code"]) == (401, "key_revoked")
        assert await api.redis.hget(api.keys.api_keys_index, key_id) is None, "nothing of it is restored"
        kept = await client.post(
            f"/api/v1/agents/{other_agent}/heartbeat", json={"docker_reachable": True}, headers=api.bearer(other)
        )
        assert kept.status == 200, "every other key is restored as usual"
    finally:
        await client.close()


async def test_a_key_listed_as_revoked_in_the_configuration_is_refused_although_redis_says_active(
    api_settings: ApiSettings, api: Api
) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    key_id = (await (await api.client.get("/api/v1/keys", headers=api.admin)).json())["keys"][0]["key_id"]
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(replace(api_settings, revoked_agent_keys=frozenset({key_id}))))
    )
    await client.start_server()
    try:
        refused = await client.post(
            f"/api/v1/agents/{agent_id}/heartbeat", json={"docker_reachable": True}, headers=api.bearer(key)
        )
        assert (refused.status, (await refused.json())["error"]["code"]) == (401, "key_revoked")
        keys = (await (await client.get("/api/v1/keys", headers=api.admin)).json())["keys"]
        assert [(k["key_id"], k["status"]) for k in keys] == [(key_id, "revoked")], "the keys list says so too"
    finally:
        await client.close()


async def test_register_carries_the_agents_tunnel_claim_to_the_reconciler(api: Api) -> None:
    key = await api.new_key()
    claim = {"tunnel_id": "6f0a1b2c-0000-4000-8000-000000000001", "tunnel_token_sha256": "ab" * 32}
    response = await api.client.post(
        "/api/v1/agents/register", json={"display_name": "h", **claim}, headers=api.bearer(key)
    )
    assert response.status == 200, await response.text()
    registered = [
        e for e in await stream_messages(api.redis, api.keys.events, EventMessage) if tag(e) == "agent_registered"
    ]
    assert [(e.tunnel_id, e.tunnel_token_sha256) for e in registered] == [tuple(claim.values())]


async def test_a_malformed_tunnel_claim_names_the_field(api: Api) -> None:
    key = await api.new_key()
    for body, field in (
        ({"tunnel_id": "t1"}, "tunnel_token_sha256"),
        ({"tunnel_id": "t1", "tunnel_token_sha256": "XYZ"}, "tunnel_token_sha256"),
        ({"tunnel_id": "bad id!", "tunnel_token_sha256": "ab" * 32}, "tunnel_id"),
    ):
        response = await api.client.post(
            "/api/v1/agents/register", json={"display_name": "h", **body}, headers=api.bearer(key)
        )
        error = (await response.json())["error"]
        assert (response.status, error.get("field")) == (422, field), error


async def test_concurrent_requests_after_the_loss_all_get_through(api: Api, prefix: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await lose_everything(api.redis, prefix)
    answers = await asyncio.gather(*(heartbeat(api, key, agent_id) for _ in range(8)))
    assert [status for status, _ in answers] == [200] * 8, "no request sees a half-restored key record"


async def test_the_agent_is_told_to_register_even_if_the_reconciler_recorded_it_meanwhile(
    api: Api, prefix: str
) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await lose_everything(api.redis, prefix)
    assert (await heartbeat(api, key, agent_id))[0] == 200  # restores the key
    # The reconciler makes a bare record from that heartbeat: no enrolment, no inventory.
    record = AgentRecord(agent_id=agent_id, display_name=agent_id)
    await api.redis.set(api.keys.agent(agent_id), msgspec.json.encode(record))
    await api.redis.sadd(api.keys.agents_index, agent_id)
    assert (await heartbeat(api, key, agent_id))[1]["reregister"] is True


async def test_a_long_poll_waiting_through_the_loss_ends_without_refusing_the_key(api: Api, prefix: str) -> None:
    """A poll that wakes after the loss finds no record for its key: that is the loss, not a revocation. Taking it
    for one sent the agent into its long back-off (a re-register attempt a minute) instead of registering again."""
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    poll = asyncio.create_task(
        api.client.get(f"/api/v1/agents/{agent_id}/commands", params={"wait": "3"}, headers=api.bearer(key))
    )
    await wait_for(lambda: api.redis.zcard(api.keys.agent_longpolls(agent_id)), what="the poll waiting")
    await lose_everything(api.redis, prefix)
    await longpoll.notify(api.redis, api.keys, agent_id)  # what wakes it does not matter: the fallback pass would

    response = await asyncio.wait_for(poll, 15)  # a valid key's poll waits out its time
    assert response.status == 200, await response.text()
    assert (await response.json())["commands"] == []
    status, body = await heartbeat(api, key, agent_id)
    assert (status, body["reregister"]) == (200, True), body
