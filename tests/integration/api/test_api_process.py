"""The API as a real ``flareport api`` process over real HTTP and real Redis: the whole agent protocol."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages import EventMessage, IntentMessage, StartTunnel
from flareport_common.readmodel import CommandRecord
from flareport_common.streams.codec import encode
from fptest.api_helpers import MASTER, stream_messages, tag
from fptest.cli_helpers import api_process as start_api_process
from fptest.waiting import wait_for

ADMIN = {"Authorization": f"Bearer {MASTER}"}


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    assert response.status == status, f"expected {status}, got {response.status}: {await response.text()}"
    return await response.json()


async def _open_long_polls(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    match = re.search(r"^flareport_api_longpolls_open (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_full_agent_protocol(
    api_process: Any, http: aiohttp.ClientSession, redis: aioredis.Redis, keys: Keys
) -> None:
    url = api_process.url
    async with http.post(url + "/api/v1/keys", json={"label": "edge-1"}, headers=ADMIN) as response:
        key = (await _json(response, 201))["key"]
    agent = {"Authorization": f"Bearer {key}"}

    async with http.post(url + "/api/v1/agents/register", json={"display_name": "edge 1"}, headers=agent) as response:
        registered = await _json(response, 200)
    agent_id = registered["agent_id"]
    assert registered["status"] == "pending"
    events = await stream_messages(redis, keys.events, EventMessage)
    assert [(tag(e), e.agent_id) for e in events] == [("agent_registered", agent_id)]

    async with http.post(url + f"/api/v1/agents/{agent_id}/enroll", json={"tunnel_name": "edge"}, headers=ADMIN) as r:
        await _json(r, 202)
    intents = await stream_messages(redis, keys.intents, IntentMessage)
    assert [(tag(i), i.agent_id, i.tunnel_name) for i in intents] == [("agent_enrolled", agent_id, "edge")]

    # The agent waits; the "reconciler" adds a command and publishes the notification.
    poll = asyncio.create_task(_poll(http, url, agent_id, agent, wait=20))
    await wait_for(lambda: _open_long_polls(http, url), what="the long-poll to be waiting in the API")
    start = StartTunnel(tunnel_id="tun-1", token="secret-token")
    await redis.xadd(keys.agent_commands(agent_id), encode(start))  # type: ignore[arg-type]
    await redis.publish(keys.command_notifications, agent_id)
    batch = await asyncio.wait_for(poll, timeout=15)
    assert [c["command"]["type"] for c in batch["commands"]] == ["start_tunnel"]
    assert batch["commands"][0]["command"]["token"] == "secret-token"
    command_id = batch["commands"][0]["command_id"]

    ack_url = url + f"/api/v1/agents/{agent_id}/commands/{command_id}/ack"
    async with http.post(ack_url, json={"ok": True, "result": {"container": "cf"}}, headers=agent) as response:
        assert (await _json(response, 200))["acked"] is True
    history = await redis.lrange(keys.agent_command_history(agent_id), 0, -1)
    record = msgspec.json.decode(history[0], type=CommandRecord)
    assert (record.command_id, record.command_type, record.ok) == (command_id, "start_tunnel", True)
    acks = [e for e in await stream_messages(redis, keys.events, EventMessage) if tag(e) == "command_ack"]
    assert [(a.command_id, a.ok) for a in acks] == [(command_id, True)]

    async with http.get(url + f"/api/v1/agents/{agent_id}", headers=ADMIN) as response:
        detail = await _json(response, 200)
    assert [(c["command_type"], c["ok"]) for c in detail["commands"]] == [("start_tunnel", True)]
    # Acknowledged means gone: the next poll is empty.
    assert (await _poll(http, url, agent_id, agent, wait=0))["commands"] == []


async def _poll(http: aiohttp.ClientSession, url: str, agent_id: str, headers: dict[str, str], wait: float) -> Any:
    async with http.get(url + f"/api/v1/agents/{agent_id}/commands", params={"wait": wait}, headers=headers) as r:
        return await _json(r, 200)


async def test_revoked_key_is_refused_on_the_next_request(api_process: Any, http: aiohttp.ClientSession) -> None:
    url = api_process.url
    async with http.post(url + "/api/v1/keys", json={"label": "edge-2"}, headers=ADMIN) as response:
        created = await _json(response, 201)
    agent = {"Authorization": f"Bearer {created['key']}"}
    async with http.post(url + "/api/v1/agents/register", json={"display_name": "e2"}, headers=agent) as response:
        agent_id = (await _json(response, 200))["agent_id"]
    beat = url + f"/api/v1/agents/{agent_id}/heartbeat"
    async with http.post(beat, json={}, headers=agent) as response:
        await _json(response, 200)
    async with http.post(url + f"/api/v1/keys/{created['info']['key_id']}/revoke", headers=ADMIN) as response:
        assert (await _json(response, 200))["status"] == "revoked"
    async with http.post(beat, json={}, headers=agent) as response:
        assert (await _json(response, 401))["error"]["code"] == "key_revoked"


async def test_another_agents_id_is_forbidden(
    api_process: Any, http: aiohttp.ClientSession, redis: aioredis.Redis, keys: Keys
) -> None:
    url = api_process.url
    ids, headers = [], []
    for name in ("a", "b"):
        async with http.post(url + "/api/v1/keys", json={"label": name}, headers=ADMIN) as response:
            header = {"Authorization": f"Bearer {(await _json(response, 201))['key']}"}
        async with http.post(url + "/api/v1/agents/register", json={"display_name": name}, headers=header) as r:
            ids.append((await _json(r, 200))["agent_id"])
        headers.append(header)
    before = await redis.xlen(keys.events)
    body = {"events": [{"type": "container_stop", "agent_id": ids[1], "seq": 1, "container_id": "c1"}]}
    async with http.post(url + f"/api/v1/agents/{ids[1]}/events", json=body, headers=headers[0]) as response:
        assert (await _json(response, 403))["error"]["code"] == "forbidden_agent"
    async with http.get(url + f"/api/v1/agents/{ids[1]}/commands", headers=headers[0]) as response:
        await _json(response, 403)
    assert await redis.xlen(keys.events) == before, "a refused request must not write to the events stream"


async def test_sigterm_releases_a_waiting_long_poll_and_exits_cleanly(
    api_process: Any, http: aiohttp.ClientSession
) -> None:
    url = api_process.url
    async with http.post(url + "/api/v1/keys", json={"label": "c"}, headers=ADMIN) as response:
        agent = {"Authorization": f"Bearer {(await _json(response, 201))['key']}"}
    async with http.post(url + "/api/v1/agents/register", json={"display_name": "c"}, headers=agent) as response:
        agent_id = (await _json(response, 200))["agent_id"]
    poll = asyncio.create_task(_poll(http, url, agent_id, agent, wait=25))
    await wait_for(lambda: _open_long_polls(http, url), what="the long-poll to be waiting in the API")
    api_process.process.send_signal(signal.SIGTERM)
    assert (await asyncio.wait_for(poll, timeout=15))["commands"] == []
    assert await asyncio.to_thread(api_process.process.wait, 15) == 0


def test_a_stopped_api_writes_its_last_log_lines_before_it_leaves(
    redis_server: LocalRedis, prefix: str, tmp_path: Path
) -> None:
    """The process leaves without the interpreter's teardown once the API stopped (``exit_now``): only after its
    orderly stop, with the stop's exit status, and with everything it logged up to its last line written."""
    log_path = tmp_path / "api.log"
    with start_api_process(redis_server.url, prefix, log_path, {"LOG_LEVEL": "info"}) as api:
        api.process.send_signal(signal.SIGTERM)
        assert api.process.wait(15) == 0
    events = [json.loads(line).get("event") for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert events[-1] == "api.stopped", events[-5:]
