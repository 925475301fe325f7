from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.settings import ReconcilerSettings
from fptest.reconciler_harness import FakeDnsWorker, Replicas, reconciler_settings


@pytest.fixture
def settings(redis_server: LocalRedis, prefix: str) -> ReconcilerSettings:
    return reconciler_settings(redis_server.url, prefix)


@pytest.fixture
async def replicas(settings: ReconcilerSettings) -> AsyncIterator[Replicas]:
    group = await Replicas(settings, count=3).start()
    yield group
    await group.stop()


@pytest.fixture
def worker(redis: aioredis.Redis, keys: Keys) -> FakeDnsWorker:
    return FakeDnsWorker(redis, keys)
