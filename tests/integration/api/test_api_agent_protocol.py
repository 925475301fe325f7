"""Agent protocol details in-process: sequence numbers, server-stamped identity and time, redelivery,
key rotation, malformed bodies and the failed-authentication brake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from flareport_api.app import create_app
from flareport_common.keys import GROUP_AGENT
from flareport_common.messages import (
    DeadLetter,
    EventMessage,
    IntentMessage,
    KeyRolled,
    RotateKey,
    StartTunnel,
)
from flareport_common.messages.events import Inventory
from flareport_common.settings import ApiSettings
from flareport_common.streams.codec import encode
from fptest.api_helpers import stream_messages, tag
from fptest.waiting import wait_for

from .conftest import Api


def stop_event(seq: int, agent_id: str = "someone-else", **extra: Any) -> dict[str, Any]:
    return {"type": "container_stop", "agent_id": agent_id, "seq": seq, "container_id": f"c{seq}", **extra}


async def post_events(api: Api, key: str, agent_id: str, events: list[dict[str, Any]]) -> Any:
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/events", json={"events": events}, headers=api.bearer(key)
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def test_events_get_the_authenticated_agent_id_and_server_time(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await post_events(api, key, agent_id, [stop_event(1, occurred_at="2001-01-01T00:00:00Z")])
    stops = [e for e in await stream_messages(api.redis, api.keys.events, EventMessage) if tag(e) == "container_stop"]
    assert [s.agent_id for s in stops] == [agent_id], "the agent id comes from the key, never from the body"
    assert datetime.now(UTC) - stops[0].occurred_at < timedelta(minutes=5), "occurred_at is the server's clock"


async def test_duplicate_and_stale_sequence_numbers_are_answered_not_added(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    first = await post_events(api, key, agent_id, [stop_event(1), stop_event(2), stop_event(3)])
    assert (first["accepted"], first["duplicates"], first["last_seq"]) == (3, [], 3)
    again = await post_events(api, key, agent_id, [stop_event(2), stop_event(3), stop_event(4)])
    assert (again["accepted"], again["duplicates"], again["last_seq"]) == (1, [2, 3], 4)
    seqs = [e.seq for e in await stream_messages(api.redis, api.keys.events, EventMessage) if hasattr(e, "seq")]
    assert seqs == [1, 2, 3, 4]
    # An agent that lost its data directory learns where to continue.
    assert (await api.register(key))["last_seq"] == 4


async def test_unacked_command_is_delivered_again_after_reregistering(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id="t", token="x")))  # type: ignore[arg-type]
    first = await _poll(api, key, agent_id)
    assert [c["deliveries"] for c in first["commands"]] == [1]
    assert (await _poll(api, key, agent_id))["commands"] == [], "delivered and not yet due: not handed out twice"
    await api.register(key)  # the agent restarted without acknowledging
    again = await _poll(api, key, agent_id)
    assert [(c["command_id"], c["deliveries"]) for c in again["commands"]] == [(first["commands"][0]["command_id"], 2)]


async def test_unacked_command_is_delivered_again_after_the_timeout(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await _poll(api, key, agent_id)  # the first poll after register re-reads pending; nothing there yet
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id="t", token="x")))  # type: ignore[arg-type]
    assert len((await _poll(api, key, agent_id))["commands"]) == 1

    async def redelivered() -> list[Any]:
        return list((await _poll(api, key, agent_id))["commands"])

    again = await wait_for(redelivered, timeout=10, what="the unacknowledged command to be redelivered")
    assert again[0]["deliveries"] == 2


async def _poll(api: Api, key: str, agent_id: str, wait: float = 0) -> Any:
    response = await api.client.get(
        f"/api/v1/agents/{agent_id}/commands", params={"wait": str(wait)}, headers=api.bearer(key)
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def test_key_roll_delivers_a_new_key_and_retires_the_old_one_after_the_ack(api: Api) -> None:
    old = await api.new_key()
    agent_id = (await api.register(old))["agent_id"]
    listed = await (await api.client.get("/api/v1/keys", headers=api.admin)).json()
    key_id = listed["keys"][0]["key_id"]
    rolled = await api.client.post(f"/api/v1/keys/{key_id}/roll", headers=api.admin)
    assert rolled.status == 200, await rolled.text()
    intents = [i for i in await stream_messages(api.redis, api.keys.intents, IntentMessage) if isinstance(i, KeyRolled)]
    assert [i.agent_id for i in intents] == [agent_id]
    new_id, ref = intents[0].key_id, intents[0].secret_ref
    assert ref is not None and intents[0].new_key == "", "the intents stream carries where the key is, not the key"
    # The reconciler turns the intent into a rotate_key command; the agent stores the key and acknowledges.
    command = RotateKey(key_id=new_id, secret_ref=ref)
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(command))  # type: ignore[arg-type]
    delivered = (await _poll(api, old, agent_id))["commands"][0]
    new_key = delivered["command"]["new_key"]
    assert new_key.startswith("fpk_") and delivered["command"]["secret_ref"] is None
    ack = await api.client.post(
        f"/api/v1/agents/{agent_id}/commands/{delivered['command_id']}/ack", json={"ok": True}, headers=api.bearer(old)
    )
    assert (await ack.json())["acked"] is True
    refused = await api.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json={}, headers=api.bearer(old))
    assert refused.status == 401
    accepted = await api.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json={}, headers=api.bearer(new_key))
    assert accepted.status == 200, await accepted.text()


async def test_an_undecodable_command_goes_to_dead_letters_not_to_the_agent(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await api.redis.xadd(api.keys.agent_commands(agent_id), {"m": b'{"type": "launch_missiles"}'})
    assert (await _poll(api, key, agent_id))["commands"] == []
    letters = await stream_messages(api.redis, api.keys.dead_letters, DeadLetter)
    assert [(d.reason, d.source_stream) for d in letters] == [("undecodable", api.keys.agent_commands(agent_id))]
    assert (await api.redis.xpending(api.keys.agent_commands(agent_id), GROUP_AGENT))["pending"] == 0


async def test_ack_of_an_unknown_command_is_404_and_a_second_ack_is_harmless(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    unknown = await api.client.post(
        f"/api/v1/agents/{agent_id}/commands/1-0/ack", json={"ok": True}, headers=api.bearer(key)
    )
    assert (unknown.status, (await unknown.json())["error"]["code"]) == (404, "unknown_command")
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id="t", token="x")))  # type: ignore[arg-type]
    command_id = (await _poll(api, key, agent_id))["commands"][0]["command_id"]
    path = f"/api/v1/agents/{agent_id}/commands/{command_id}/ack"
    first = await api.client.post(path, json={"ok": False, "error": "image missing"}, headers=api.bearer(key))
    second = await api.client.post(path, json={"ok": False, "error": "image missing"}, headers=api.bearer(key))
    assert [(await first.json())["acked"], (await second.json())["acked"]] == [True, False]
    assert await api.redis.llen(api.keys.agent_command_history(agent_id)) == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"events": [{"type": "container_stop", "agent_id": "a", "seq": "one", "container_id": "c"}]}, 422,
         "events[0].seq"),
        ({"events": [], "extra": 1}, 422, "extra"),
        ({"events": [{"type": "launch", "agent_id": "a"}]}, 422, "events[0].type"),
        ({"events": [stop_event(-1)]}, 422, "events[0].seq"),
        ({}, 422, "events"),
    ],
)  # fmt: skip
async def test_malformed_event_batches_are_rejected_naming_the_field(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    before = await api.redis.xlen(api.keys.events)
    response = await api.client.post(f"/api/v1/agents/{agent_id}/events", json=body, headers=api.bearer(key))
    error = (await response.json())["error"]
    assert (response.status, error["code"], error.get("field")) == (status, "invalid_body", field)
    assert await api.redis.xlen(api.keys.events) == before, "nothing is written for a rejected request"


async def test_an_inventory_larger_than_the_general_body_limit_is_accepted(api: Api) -> None:
    """A host with many labelled containers sends them all in one snapshot; it must not be refused forever."""
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    containers = [
        {"container_id": f"{i:064x}", "name": f"app-{i}", "image": "registry.example.com/team/app:1.2.3",
         "rules": [{"hostname": f"app-{i}.example.com", "service": f"http://app-{i}:8080"}]}
        for i in range(1000)
    ]  # fmt: skip
    body = msgspec.json.encode({"events": [{"type": "inventory", "agent_id": "", "seq": 1, "containers": containers}]})
    assert 64 * 1024 < len(body) < 256 * 1024
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/events", data=body, headers={**api.bearer(key), "Content-Type": "application/json"}
    )
    assert response.status == 200, await response.text()
    [inventory] = [
        e for e in await stream_messages(api.redis, api.keys.events, EventMessage) if isinstance(e, Inventory)
    ]
    assert len(inventory.containers) == 1000
    assert inventory.agent_id == agent_id


async def test_not_json_oversize_and_bad_query_are_rejected(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    path = f"/api/v1/agents/{agent_id}/events"
    garbage = await api.client.post(path, data=b"{not json", headers=api.bearer(key))
    assert (garbage.status, (await garbage.json())["error"]["code"]) == (400, "malformed_json")
    huge = {"events": [stop_event(i) for i in range(3000)]}
    too_big = await api.client.post(path, json=huge, headers=api.bearer(key))
    assert (too_big.status, (await too_big.json())["error"]["code"]) == (413, "body_too_large")
    assert "262144 bytes" in (await too_big.json())["error"]["message"], "the events limit is named"
    padded = await api.client.post(
        f"/api/v1/agents/{agent_id}/heartbeat", json={"padding": "x" * 70_000}, headers=api.bearer(key)
    )
    assert padded.status == 413, "other agent routes keep the general limit"
    wait = await api.client.get(f"/api/v1/agents/{agent_id}/commands?wait=999", headers=api.bearer(key))
    assert (wait.status, (await wait.json())["error"]["field"]) == (422, "wait")
    bad_id = await api.client.post("/api/v1/agents/bad%20id/heartbeat", json={}, headers=api.bearer(key))
    assert (bad_id.status, (await bad_id.json())["error"]["field"]) == (422, "agent_id")


async def test_unregistered_and_unknown_keys(api: Api) -> None:
    key = await api.new_key()
    unbound = await api.client.post("/api/v1/agents/x1/heartbeat", json={}, headers=api.bearer(key))
    assert (unbound.status, (await unbound.json())["error"]["code"]) == (403, "not_registered")
    unknown = await api.client.post("/api/v1/agents/register", json={"display_name": "x"}, headers=api.bearer("nope"))
    assert (unknown.status, (await unknown.json())["error"]["code"]) == (401, "unknown_key")
    admin_as_agent = await api.client.post("/api/v1/agents/register", json={"display_name": "x"}, headers=api.admin)
    assert admin_as_agent.status == 401


async def test_failed_authentication_is_rate_limited_per_client(
    api_settings: ApiSettings, redis: Any, keys: Any
) -> None:
    from dataclasses import replace

    from aiohttp.test_utils import TestClient, TestServer

    client: TestClient[Any, Any] = TestClient(TestServer(create_app(replace(api_settings, auth_failure_limit=3))))
    await client.start_server()
    try:
        statuses = []
        for _ in range(4):
            response = await client.get("/api/v1/keys", headers={"Authorization": "Bearer wrong"})
            statuses.append(response.status)
        assert statuses == [401, 401, 401, 429]
        assert int(response.headers["Retry-After"]) >= 1
        # The right key is checked first, so the brake never refuses it.
        right = await client.get("/api/v1/keys", headers={"Authorization": f"Bearer {api_settings.master_api_key}"})
        assert right.status == 200
    finally:
        await client.close()


async def test_replicas_brake_an_address_on_their_failures_together(api_settings: ApiSettings) -> None:
    """Behind a load balancer a guesser's failures are spread over the replicas; the brake counts them all."""
    from dataclasses import replace

    from aiohttp.test_utils import TestClient, TestServer

    settings = replace(api_settings, auth_failure_limit=4)
    replicas: list[TestClient[Any, Any]] = [TestClient(TestServer(create_app(settings))) for _ in range(2)]
    for replica in replicas:
        await replica.start_server()
    try:
        statuses = []
        for attempt in range(8):
            response = await replicas[attempt % 2].get("/api/v1/keys", headers={"Authorization": "Bearer wrong"})
            statuses.append(response.status)
        # 4 failures in all brake the address; each replica lets at most one more through before it knows.
        assert statuses.count(401) <= 4 + 1, statuses
        assert statuses[-2:] == [429, 429], "both replicas refuse the address"
        right = f"Bearer {settings.master_api_key}"
        assert [(await r.get("/api/v1/keys", headers={"Authorization": right})).status for r in replicas] == [200] * 2
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_missed_notification_costs_at_most_one_poll_interval(api: Api) -> None:
    """No PUBLISH at all: the fallback check (0.5 s in these tests) still hands the command to the waiting agent."""
    import asyncio

    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await _poll(api, key, agent_id)
    waiting = asyncio.create_task(_poll(api, key, agent_id, wait=20))

    async def parked() -> bool:
        metrics = await (await api.client.get("/metrics")).text()
        line = next(x for x in metrics.splitlines() if x.startswith("flareport_api_longpolls_open "))
        return float(line.split()[1]) >= 1

    await wait_for(parked, what="the long-poll to be waiting")
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id="t", token="quiet")))  # type: ignore[arg-type]
    batch = await asyncio.wait_for(waiting, timeout=10)
    assert [c["command"]["token"] for c in batch["commands"]] == ["quiet"]


async def test_a_missed_notification_reaches_an_agent_beyond_the_fallbacks_first_round_trip(api: Api) -> None:
    """The fallback looks at the waiting agents' streams a chunk at a time (so 1,000 replies never hold the event
    loop at once): an agent parked after the first chunk still gets a command nobody announced."""
    import asyncio

    agents = []
    for n in range(55):
        key = await api.new_key(f"host-{n}")
        agents.append((key, (await api.register(key))["agent_id"]))
    waiting = []
    for count, (key, agent_id) in enumerate(agents, start=1):
        waiting.append(asyncio.create_task(_poll(api, key, agent_id, wait=20)))

        async def parked(count: int = count) -> bool:
            metrics = await (await api.client.get("/metrics")).text()
            line = next(x for x in metrics.splitlines() if x.startswith("flareport_api_longpolls_open "))
            return float(line.split()[1]) >= count

        await wait_for(parked, what=f"long-poll {count} to be waiting")  # parked in this order
    last_agent = agents[-1][1]
    await api.redis.xadd(api.keys.agent_commands(last_agent), encode(StartTunnel(tunnel_id="t", token="late")))  # type: ignore[arg-type]
    batch = await asyncio.wait_for(waiting[-1], timeout=10)
    assert [c["command"]["token"] for c in batch["commands"]] == ["late"]
    for task in waiting[:-1]:
        task.cancel()
    await asyncio.gather(*waiting[:-1], return_exceptions=True)


async def test_heartbeat_is_stamped_by_the_server_and_answers_the_read_model_status(api: Api) -> None:
    import msgspec

    from flareport_common.readmodel import AgentRecord

    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    body = {"tunnel": {"container_state": "running", "tunnel_id": "tun-9"}, "agent_version": "1.2"}
    first = await api.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json=body, headers=api.bearer(key))
    assert (await first.json())["status"] == "pending"
    record = AgentRecord(agent_id=agent_id, display_name="x", status="active")
    await api.redis.set(api.keys.agent(agent_id), msgspec.json.encode(record))
    second = await api.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json=body, headers=api.bearer(key))
    answer = await second.json()
    assert (answer["status"], answer["reregister"]) == ("active", False)
    beats = [e for e in await stream_messages(api.redis, api.keys.events, EventMessage) if tag(e) == "heartbeat"]
    assert [(b.agent_id, b.tunnel.tunnel_id) for b in beats] == [(agent_id, "tun-9")] * 2
    assert datetime.now(UTC) - beats[-1].occurred_at < timedelta(minutes=5)
    detail = await (await api.client.get(f"/api/v1/agents/{agent_id}", headers=api.admin)).json()
    assert [h["tunnel"]["tunnel_id"] for h in detail["heartbeats"]] == ["tun-9", "tun-9"]
