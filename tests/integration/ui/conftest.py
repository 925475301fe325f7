"""Fixtures for web UI tests: the API app in-process with a known admin password, a logged-in browser-like client,
and helpers that write the read model the way the reconciler does (AgentRecord / RuleRecord JSON documents)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, async_playwright

from flareport_api.app import create_app
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.settings import ApiSettings, CommonSettings
from fptest.api_helpers import MASTER
from fptest.cli_helpers import api_process

PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def ui_settings(url: str, prefix: str, **overrides: Any) -> ApiSettings:
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
        admin_password=PASSWORD,
        ui_events_seconds=0.1,
    )
    return replace(settings, **overrides)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page carries a CSRF token in its forms"
    return found.group(1)


@dataclass
class Ui:
    client: TestClient[Any, Any]
    keys: Keys
    redis: aioredis.Redis
    csrf: str = ""

    async def login(self, user: str = "admin", password: str = PASSWORD) -> Any:
        page = await self.client.get("/ui/login")
        token = csrf_of(await page.text())
        data = {"csrf": token, "username": user, "password": password, "next": "/ui/"}
        return await self.client.post("/ui/login", data=data, allow_redirects=False)

    async def logged_in(self) -> Ui:
        response = await self.login()
        assert response.status == 302, await response.text()
        self.csrf = csrf_of(await (await self.client.get("/ui/")).text())
        return self

    async def post(self, path: str, **fields: str) -> Any:
        return await self.client.post(path, data={"csrf": self.csrf, **fields}, allow_redirects=False)

    async def html(self, path: str) -> str:
        response = await self.client.get(path, allow_redirects=False)
        assert response.status == 200, f"{path}: {response.status} {await response.text()}"
        return str(await response.text())

    async def put_agent(self, record: AgentRecord) -> None:
        await put_agent(self.redis, self.keys, record)

    async def put_rule(self, record: RuleRecord) -> None:
        await put_rule(self.redis, self.keys, record)


async def put_agent(redis: aioredis.Redis, keys: Keys, record: AgentRecord) -> None:
    """As ``records.update_agent`` writes: the document, its index entry and the read-model counter, atomically."""
    await _put(redis, keys, keys.agent(record.agent_id), keys.agents_index, record.agent_id, record)


async def put_rule(redis: aioredis.Redis, keys: Keys, record: RuleRecord) -> None:
    """As the reconciler's rule scripts write: the document, its index entry and the read-model counter."""
    await _put(redis, keys, keys.rule(record.key), keys.rules_index, record.key, record)


async def _put(redis: aioredis.Redis, keys: Keys, key: str, index: str, member: str, record: msgspec.Struct) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.set(key, msgspec.json.encode(record))
    pipe.sadd(index, member)
    pipe.incr(keys.readmodel_version)
    await pipe.execute()


@pytest.fixture
def settings(redis_server: LocalRedis, prefix: str) -> ApiSettings:
    return ui_settings(redis_server.url, prefix)


@pytest.fixture
async def ui(settings: ApiSettings, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[Ui]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield Ui(client=client, keys=keys, redis=redis)
    finally:
        await client.close()


@pytest.fixture
def api_url(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[str]:
    """A real ``flareport api`` process with the admin password set, for the tests that drive it from Chromium."""
    with api_process(redis_server.url, prefix, tmp_path / "api.log", {"FLAREPORT_ADMIN_PASSWORD": PASSWORD}) as api:
        yield api.url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
