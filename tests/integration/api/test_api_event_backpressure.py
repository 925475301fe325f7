"""Agent events under load, in-process against a real redis-server: a 2xx means the reconciler will get the
event; a deep backlog or an agent over its rate gets a 429 naming the limit, with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_agent.client import MasterClient
from flareport_agent.link import MasterLink
from flareport_agent.outbox import Outbox, send_loop
from flareport_api.app import create_app
from flareport_api.quotas import refusals
from flareport_common.keys import GROUP_RECONCILER, Keys
from flareport_common.messages import EventMessage
from flareport_common.messages.events import ContainerStop
from flareport_common.protocol import RegisterRequest
from flareport_common.settings import AgentQuotas, ApiSettings
from fptest.api_helpers import stream_messages
from fptest.waiting import wait_for

from .conftest import Api

BACKLOG = 300


def stop(seq: int) -> dict[str, Any]:
    return {"type": "container_stop", "agent_id": "ignored", "seq": seq, "container_id": "c1"}


async def api_with(settings: ApiSettings, keys: Keys, redis: aioredis.Redis, quotas: AgentQuotas) -> Api:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(replace(settings, quotas=quotas))))
    await client.start_server()
    return Api(client=client, keys=keys, redis=redis)


@pytest.fixture
async def tight(api_settings: ApiSettings, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[Api]:
    """An API whose backlog limit is small and whose agents may send fast."""
    quotas = AgentQuotas(events_per_second=1e6, events_burst=1_000_000, events_backlog=BACKLOG)
    api = await api_with(api_settings, keys, redis, quotas)
    yield api
    await api.client.close()


async def post(api: Api, key: str, agent_id: str, events: list[dict[str, Any]]) -> tuple[int, Any, dict[str, str]]:
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/events", json={"events": events}, headers=api.bearer(key)
    )
    return response.status, await response.json(), dict(response.headers)


async def reconciler_reads_all(redis: aioredis.Redis, keys: Keys) -> list[bytes]:
    """Read the events stream as the reconciler's group does, acknowledging everything."""
    ids: list[bytes] = []
    while True:
        reply: Any = await redis.xreadgroup(GROUP_RECONCILER, "r1", {keys.events: ">"}, count=500)
        if not reply or not reply[0][1]:
            return ids
        batch = [entry_id for entry_id, _ in reply[0][1]]
        await redis.xack(keys.events, GROUP_RECONCILER, *batch)
        ids += batch


async def test_a_flood_beyond_the_backlog_gets_429_and_every_accepted_event_reaches_the_reconciler(tight: Api) -> None:
    await tight.redis.xgroup_create(tight.keys.events, GROUP_RECONCILER, id="0", mkstream=True)
    flooder, victim = await tight.new_key("flooder"), await tight.new_key("victim")
    flooder_id = (await tight.register(flooder, "flooder"))["agent_id"]
    victim_id = (await tight.register(victim, "victim"))["agent_id"]
    accepted, seq, refused = 2, 0, None  # the two registrations are events too
    while refused is None and seq < 20 * BACKLOG:
        status, body, headers = await post(tight, flooder, flooder_id, [stop(seq + i + 1) for i in range(50)])
        if status == 200:
            accepted += body["accepted"]
            seq += 50
        else:
            refused = (status, body, headers)
    assert refused is not None, "the flood was never pushed back"
    status, body, headers = refused
    assert status == 429 and body["error"]["field"] == "events_backlog", body
    assert int(headers["Retry-After"]) >= 1
    # Everyone is held back while the reconciler is behind; the victim's event is not taken and then lost.
    status, body, _ = await post(tight, victim, victim_id, [stop(1)])
    assert (status, body["error"]["field"]) == (429, "events_backlog")
    assert [r.limit for r in await refusals(tight.redis, tight.keys, flooder_id)] == ["events_backlog"]

    handled = await reconciler_reads_all(tight.redis, tight.keys)
    assert len(handled) == accepted, "every event answered 2xx is still in the stream for the reconciler"
    status, body, _ = await post(tight, victim, victim_id, [stop(1)])
    assert (status, body["accepted"]) == (200, 1), "once the backlog is handled, events are taken again"
    assert len(await reconciler_reads_all(tight.redis, tight.keys)) == 1


async def test_a_refused_batch_can_be_sent_again_with_the_same_sequence_numbers(tight: Api) -> None:
    await tight.redis.xgroup_create(tight.keys.events, GROUP_RECONCILER, id="0", mkstream=True)
    key = await tight.new_key()
    agent_id = (await tight.register(key))["agent_id"]
    for start in range(0, BACKLOG, 100):
        assert (await post(tight, key, agent_id, [stop(start + i + 1) for i in range(100)]))[0] == 200
    batch = [stop(BACKLOG + 1), stop(BACKLOG + 2)]
    assert (await post(tight, key, agent_id, batch))[0] == 429
    await reconciler_reads_all(tight.redis, tight.keys)
    status, body, _ = await post(tight, key, agent_id, batch)
    assert (status, body["accepted"], body["duplicates"]) == (200, 2, []), "a refused seq is not taken"


async def test_heartbeats_under_backlog_are_answered_but_not_queued(tight: Api) -> None:
    await tight.redis.xgroup_create(tight.keys.events, GROUP_RECONCILER, id="0", mkstream=True)
    key = await tight.new_key()
    agent_id = (await tight.register(key))["agent_id"]
    for start in range(0, BACKLOG, 100):
        await post(tight, key, agent_id, [stop(start + i + 1) for i in range(100)])
    length = await tight.redis.xlen(tight.keys.events)
    response = await tight.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json={}, headers=tight.bearer(key))
    assert response.status == 200, await response.text()
    assert await tight.redis.xlen(tight.keys.events) == length


async def test_an_agent_over_its_rate_gets_429_naming_the_limit_while_others_are_served(
    api_settings: ApiSettings, keys: Keys, redis: aioredis.Redis
) -> None:
    api = await api_with(api_settings, keys, redis, AgentQuotas(events_per_second=0.5, events_burst=20))
    try:
        flooder, other = await api.new_key("flooder"), await api.new_key("other")
        flooder_id = (await api.register(flooder, "flooder"))["agent_id"]
        other_id = (await api.register(other, "other"))["agent_id"]
        status, body, _ = await post(api, flooder, flooder_id, [stop(i + 1) for i in range(19)])
        assert (status, body["accepted"]) == (200, 19), "the burst goes through at once"
        status, body, headers = await post(api, flooder, flooder_id, [stop(20), stop(21)])
        assert status == 429, body
        assert body["error"]["field"] == "events_per_second" and "0.5 events per second" in body["error"]["message"]
        assert int(headers["Retry-After"]) >= 1
        status, body, _ = await post(api, other, other_id, [stop(1), stop(2)])
        assert (status, body["accepted"]) == (200, 2), "another agent's own bucket is untouched"
        status, body, _ = await post(api, flooder, flooder_id, [stop(1), stop(19)])
        assert (status, body["duplicates"]) == (200, [1, 19]), "a retried, already accepted batch costs nothing"
        [refusal] = await refusals(redis, keys, flooder_id)
        assert (refusal.limit, refusal.status, refusal.count) == ("events_per_second", 429, 1)
        detail = await (await api.client.get(f"/api/v1/agents/{flooder_id}", headers=api.admin)).json()
        assert [(r["limit"], r["count"]) for r in detail["quota_refusals"]] == [("events_per_second", 1)]
        assert await refusals(redis, keys, other_id) == []
    finally:
        await api.client.close()


async def test_the_agent_outbox_waits_out_429s_and_delivers_every_event_in_order(
    api_settings: ApiSettings, keys: Keys, redis: aioredis.Redis
) -> None:
    """The real outbox and client against the real API: refused batches stay buffered and go later, none lost."""
    api = await api_with(api_settings, keys, redis, AgentQuotas(events_per_second=40, events_burst=10))
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    client = MasterClient(str(api.client.make_url("/")), key)
    link = MasterLink(client, lambda: RegisterRequest(display_name="flooder"))
    await link.connect()
    assert client.agent_id == agent_id
    outbox = Outbox(capacity=1000, last_seq=0, snapshot=lambda: pytest.fail("no snapshot: nothing may be dropped"))
    outbox.agent_id = agent_id
    delivered: list[int] = []
    sender = asyncio.create_task(send_loop(outbox, link, max_batch=10, linger=0, on_accepted=delivered.append))
    try:
        for i in range(60):
            outbox.put(ContainerStop(agent_id=agent_id, seq=0, container_id=f"c{i}"))

        async def all_sent() -> bool:
            return len(outbox) == 0 and bool(delivered) and delivered[-1] == 60

        await wait_for(all_sent, what="every buffered event accepted")
        stops = [e for e in await stream_messages(redis, keys.events, EventMessage) if isinstance(e, ContainerStop)]
        assert [s.seq for s in stops] == list(range(1, 61)), "each event once, in order"
        [refusal] = await refusals(redis, keys, agent_id)
        assert refusal.limit == "events_per_second" and refusal.count >= 1, "the outbox was pushed back on the way"
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await link.close()
        await api.client.close()
