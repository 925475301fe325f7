"""An agent reaching a real API process through a stand-in for Cloudflare Access (``fptest.access_gate``): without
the service token it cannot register; with it, every call — registration, events, command long-poll, ack,
heartbeat — gets through, and the API receives what the agent reports."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages import EventMessage, ResyncInventory
from flareport_common.streams.codec import encode
from fptest.access_gate import AccessGate
from fptest.agent_harness import Containers, RunningAgent
from fptest.api_helpers import MASTER, stream_messages, tag
from fptest.cli_helpers import ApiProcess
from fptest.cli_helpers import api_process as start_api_process
from fptest.waiting import wait_for

CLIENT_ID = "0123abcd.access"
CLIENT_SECRET = "s3cr3t-service-token-value"


@pytest.fixture
def api(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[ApiProcess]:
    with start_api_process(redis_server.url, prefix, tmp_path / "api.log") as process:
        yield process


@pytest.fixture
async def gate(api: ApiProcess) -> AsyncIterator[AccessGate]:
    proxy = AccessGate(api.url, CLIENT_ID, CLIENT_SECRET)
    await proxy.start()
    yield proxy
    await proxy.stop()


def _admin(api: ApiProcess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the test's own loopback API
        api.url + path,
        method=method,
        data=None if body is None else msgspec.json.encode(body),
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return msgspec.json.decode(response.read())


async def test_an_agent_behind_cloudflare_access_registers_and_reports_only_with_the_service_token(
    api: ApiProcess,
    gate: AccessGate,
    start_agent: Callable[..., RunningAgent],
    containers: Containers,
    redis: aioredis.Redis,
    keys: Keys,
    docker_host: str,
    tmp_path: Path,
) -> None:
    key = _admin(api, "POST", "/api/v1/keys", {"label": "behind-access"})["key"]
    web = containers.run(
        {"flareport.enable": "true", "flareport.hostname": "web.example.test", "flareport.service": "http://web:80"}
    )

    without = start_agent(master_url=gate.url, api_key=key, data_dir=str(tmp_path / "without"))
    await wait_for(
        lambda: _async(("POST", "/api/v1/agents/register") in gate.calls(allowed=False)),
        what="the agent without a service token to try registering",
    )
    assert not without.agent.link.is_open, "a refused registration leaves the agent unregistered"
    await without.stop()
    assert await stream_messages(redis, keys.events, EventMessage) == [], "nothing reached the API"
    assert gate.calls(allowed=True) == set()
    refused = len(gate.seen)

    # The agent that gets through is a real process configured by DockFlare's variable names, logging at debug.
    log_path = tmp_path / "agent.log"
    env = {
        **os.environ,
        "DOCKFLARE_MASTER_URL": gate.url,
        "DOCKFLARE_API_KEY": key,
        "CF_ACCESS_CLIENT_ID": CLIENT_ID,
        "CF_ACCESS_CLIENT_SECRET": CLIENT_SECRET,
        "DOCKER_HOST": docker_host,
        "CLOUDFLARED_IMAGE": BUSYBOX_IMAGE,
        "AGENT_DATA_DIR": str(tmp_path / "with"),
        "FLAREPORT_HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "debug",
    }
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flareport_cli.main", "agent", env=env, stdout=log, stderr=log
        )
    try:
        await _served_with_the_token(gate, redis, keys, web.id)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0, log_path.read_text()[-2000:]
    logged = log_path.read_text()
    assert "master.registered" in logged
    assert CLIENT_SECRET not in logged, "the service token's secret is never logged"
    assert all(seen.allowed for seen in gate.seen[refused:]), "every call of the agent with the token got through"


async def _served_with_the_token(gate: AccessGate, redis: aioredis.Redis, keys: Keys, container_id: str) -> None:
    async def registered() -> str | None:
        events = await stream_messages(redis, keys.events, EventMessage)
        return next((e.agent_id for e in events if tag(e) == "agent_registered"), None)

    agent_id = await wait_for(registered, what="the agent with the token to register")
    assert agent_id is not None

    async def reported() -> list[Any]:
        events = await stream_messages(redis, keys.events, EventMessage)
        return [
            e
            for e in events
            if tag(e) == "inventory"
            and e.agent_id == agent_id
            and container_id in {c.container_id for c in e.containers}
        ]

    await wait_for(reported, what="the agent's inventory with its labelled container in the API's events stream")

    # A command goes out through the long-poll and its ack comes back through the gate.
    await redis.xadd(keys.agent_commands(agent_id), encode(ResyncInventory()))  # type: ignore[arg-type]
    await redis.publish(keys.command_notifications, agent_id)

    async def acked() -> list[Any]:
        events = await stream_messages(redis, keys.events, EventMessage)
        return [e for e in events if tag(e) == "command_ack" and e.agent_id == agent_id and e.ok]

    await wait_for(acked, what="the agent's ack of resync_inventory")
    await wait_for(
        lambda: _async(("POST", "/api/v1/agents/{id}/heartbeat") in gate.calls(allowed=True)),
        what="a heartbeat through the gate",
    )
    assert gate.calls(allowed=True) >= {
        ("POST", "/api/v1/agents/register"),
        ("POST", "/api/v1/agents/{id}/events"),
        ("GET", "/api/v1/agents/{id}/commands"),
        ("POST", "/api/v1/agents/{id}/commands/{command}/ack"),
        ("POST", "/api/v1/agents/{id}/heartbeat"),
    }


async def _async(value: bool) -> bool:
    return value
