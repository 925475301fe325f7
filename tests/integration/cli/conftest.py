"""Fixtures for the admin CLI tests: one ``flareport api`` process per test on the session redis-server.

Each test has its own key prefix, so its API process sees only that test's keys, agents and rules; the CLI
finds the API through FLAREPORT_URL and MASTER_API_KEY, as an operator's shell would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess, ReadModel, api_process


@pytest.fixture
def api(redis_server: LocalRedis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProcess]:
    with api_process(redis_server.url, prefix, tmp_path / "api.log") as process:
        monkeypatch.setenv("FLAREPORT_URL", process.url)
        monkeypatch.setenv("MASTER_API_KEY", MASTER)
        yield process


@pytest.fixture
def sync_redis(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def readmodel(sync_redis: redis.Redis, keys: Keys) -> ReadModel:
    return ReadModel(sync_redis, keys)
