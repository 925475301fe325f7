"""Fixtures for API tests: the app in-process (aiohttp TestServer) or as a real ``flareport api`` process.

Both talk to the session redis-server under a per-test key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_cli.localredis import LocalRedis, free_port
from flareport_common.keys import Keys
from flareport_common.settings import ApiSettings, CommonSettings
from fptest.api_helpers import MASTER
from fptest.waiting import wait_for_sync


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


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def api_process(redis_server: LocalRedis, prefix: str, tmp_path: Any) -> Iterator[ApiProcess]:
    """``flareport api`` as its own process, configured only through the environment."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "MASTER_API_KEY": MASTER,
        "FLAREPORT_API_HOST": "127.0.0.1",
        "FLAREPORT_API_PORT": str(port),
        "FLAREPORT_KEY_PREFIX": prefix,
        "FLAREPORT_API_MAX_BODY_BYTES": "65536",
        "FLAREPORT_API_COMMAND_POLL_SECONDS": "5",
        # schemathesis sends many requests without a valid key on purpose; the brake is tested in-process.
        "FLAREPORT_API_AUTH_FAILURE_LIMIT": "1000000",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
    }
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen([sys.executable, "-m", "flareport_cli", "api"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"api exited with {process.returncode}: {(tmp_path / 'api.log').read_text()}")
        try:
            import urllib.request

            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:  # noqa: S310 - loopback only
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for_sync(ready, timeout=20, what="the api process to answer /readyz")
        yield ApiProcess(url=url, process=process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
