"""No secret in any log line: a real ``flareport api`` process with console logs (what ``make run`` and a terminal
use), made to fail inside a request by an agent key holder, logs the traceback without the master key, the agent
key or the Redis password."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from fptest.api_helpers import MASTER
from fptest.cli_helpers import api_process
from fptest.waiting import wait_for

ADMIN = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture
async def redis_user(redis: aioredis.Redis, prefix: str) -> AsyncIterator[tuple[str, str]]:
    """A Redis user of its own with a password, so the API's Redis URL carries a secret."""
    name, password = f"api-{prefix.strip(':')}", secrets.token_urlsafe(24)
    await redis.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")  # type: ignore[no-untyped-call]
    try:
        yield name, password
    finally:
        await redis.execute_command("ACL", "DELUSER", name)  # type: ignore[no-untyped-call]


async def test_a_failing_request_logs_its_traceback_without_any_secret(
    redis_server: LocalRedis, redis: aioredis.Redis, redis_user: tuple[str, str], prefix: str, tmp_path: Path
) -> None:
    name, password = redis_user
    url = f"redis://{name}:{password}@127.0.0.1:{redis_server.port}"
    log_path = tmp_path / "api.log"
    with api_process(url, prefix, log_path, {"LOG_FORMAT": "console", "LOG_LEVEL": "info"}) as api:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{api.url}/api/v1/keys", json={"label": "h"}, headers=ADMIN) as response:
                assert response.status == 201
                agent_key = str((await response.json())["key"])
            # Redis starts refusing the key lookup: an unexpected error inside the request, which any key holder
            # (or anyone at all) can provoke while it lasts.
            await redis.execute_command("ACL", "SETUSER", name, "-hgetall")  # type: ignore[no-untyped-call]
            headers = {"Authorization": f"Bearer {agent_key}"}
            async with http.post(f"{api.url}/api/v1/agents/register", json={"display_name": "x"}, headers=headers) as r:
                assert r.status == 500
                body = await r.text()
            assert "NoPermission" not in body and password not in body, "the answer names no internal detail"

        async def logged() -> bool:
            return "Traceback" in log_path.read_text(errors="replace")

        await wait_for(logged, timeout=10, what="the traceback of the failed request in the log")
    text = log_path.read_text(errors="replace")
    assert "NoPermissionError" in text, "the traceback is there for the operator"
    for secret, what in ((MASTER, "master key"), (password, "Redis password"), (agent_key, "agent key")):
        # Any 20 characters of a secret count: a traceback that shows locals cuts long values, not short ones.
        pieces = {secret[i : i + 20] for i in range(len(secret) - 19)}
        assert not [p for p in pieces if p in text], f"(part of) the {what} is in the log"
