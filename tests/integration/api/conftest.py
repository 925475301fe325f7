"""Fixtures for API tests: the app in-process (aiohttp TestServer) or as a real ``flareport api`` process.

Both talk to the session redis-server under a per-test key prefix, so tests never see each other's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.settings import ApiSettings, CommonSettings
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess
from fptest.cli_helpers import api_process as start_api_process


def make_settings(url: str, prefix: str, **overrides: Any) -> ApiSettings:
    common = CommonSettings(
        redis_url=url, redis_db_index=None, key_prefix=prefix, log_level="warning", log_format="json", tz=None
    )
    settings = ApiSettings(
        common=common,
        host="127.0.0.1",
        port=0,
        master_api_key=MASTER,
        max_body_bytes=64 * 1024,
        max_events_body_bytes=256 * 1024,
        command_poll_seconds=0.5,
        command_redeliver_seconds=2.0,
        max_wait_seconds=30.0,
    )
    return replace(settings, **overrides)


@dataclass
class Api:
    client: TestClient[Any, Any]
    keys: Keys
    redis: aioredis.Redis

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {MASTER}"}

    @staticmethod
    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def new_key(self, label: str = "host-1") -> str:
        response = await self.client.post("/api/v1/keys", json={"label": label}, headers=self.admin)
        assert response.status == 201, await response.text()
        return str((await response.json())["key"])

    async def register(self, key: str, name: str = "host one") -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/agents/register", json={"display_name": name}, headers=self.bearer(key)
        )
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


@pytest.fixture
def api_settings(redis_server: LocalRedis, prefix: str) -> ApiSettings:
    return make_settings(redis_server.url, prefix)


@pytest.fixture
async def api(api_settings: ApiSettings, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[Api]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(api_settings)))
    await client.start_server()
    try:
        yield Api(client=client, keys=keys, redis=redis)
    finally:
        await client.close()


@pytest.fixture
def api_process(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[ApiProcess]:
    """``flareport api`` as its own process, configured only through the environment."""
    extra = {
        "FLAREPORT_API_MAX_BODY_BYTES": "65536",
        "FLAREPORT_API_COMMAND_POLL_SECONDS": "5",
        # schemathesis sends many requests without a valid key on purpose; the brake is tested in-process.
        "FLAREPORT_API_AUTH_FAILURE_LIMIT": "1000000",
    }
    with start_api_process(redis_server.url, prefix, tmp_path / "api.log", extra) as process:
        yield process


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
