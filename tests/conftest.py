"""Test harness: real redis-server processes, unique key prefixes per test, markers by directory.

Tests never FLUSHALL a shared server: each test gets its own prefix (and so its own streams and groups), so
tests can share one server and could run in parallel.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if TESTS / "integration" in path.parents:
            item.add_marker(pytest.mark.integration)
        elif TESTS / "e2e" in path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """One redis-server (no persistence) for the whole session."""
    server = LocalRedis(tmp_path_factory.mktemp("redis-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., LocalRedis]]:
    """Private redis-server processes a test may restart, kill or run with AOF; all stopped at the end."""
    servers: list[LocalRedis] = []

    def make(*, aof: bool = False) -> LocalRedis:
        server = LocalRedis(tmp_path / f"redis-{len(servers)}", aof=aof)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop(kill=True)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
async def redis(redis_server: LocalRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An API started without an admin password writes the generated one under ``$XDG_STATE_HOME``: a temporary
    directory for the whole session (in-process apps and the processes tests start), never the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
        yield


# --- Cloudflare contract checks (docs/cloudflare-emulator.md, "Contract checks") ----------------------------------
# Every emulator the suite starts, in-process or as a process, holds each SDK request and each response against the
# official SDK's types; a violation is appended to one file, and the test that caused it fails.
CONTRACTS_LOG = Path(
    os.environ.setdefault("FLAREPORT_CFEMU_CONTRACTS_LOG", f"/tmp/flareport-contracts-{os.getpid()}.jsonl")
)
os.environ.setdefault("FLAREPORT_CFEMU_CONTRACTS", "strict")
CONTRACTS_LOG.unlink(missing_ok=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cloudflare_contracts_off: the test sends the emulator requests the SDK's types refuse, on purpose"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if CONTRACTS_LOG.name == f"flareport-contracts-{os.getpid()}.jsonl":
        CONTRACTS_LOG.unlink(missing_ok=True)  # the session's own log (a path set from outside is left alone)


@pytest.fixture(autouse=True)
def _cloudflare_contracts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test when an emulator recorded a contract violation while it ran."""
    off = request.node.get_closest_marker("cloudflare_contracts_off") is not None
    with pytest.MonkeyPatch.context() as patch:
        if off:
            patch.setenv("FLAREPORT_CFEMU_CONTRACTS", "off")
        start = CONTRACTS_LOG.stat().st_size if CONTRACTS_LOG.exists() else 0
        yield
    if not CONTRACTS_LOG.exists() or CONTRACTS_LOG.stat().st_size <= start:
        return
    with CONTRACTS_LOG.open("rb") as handle:
        handle.seek(start)
        new = [json.loads(line) for line in handle.read().decode().splitlines() if line.strip()]
    if new and not off:
        details = "\n".join(
            f"  {v['endpoint']} ({v['side']}, {v['sdk_type']}): {'; '.join(v['problems'][:3])}" for v in new[:10]
        )
        pytest.fail(f"{len(new)} Cloudflare contract violation(s) against the official SDK's types:\n{details}")
