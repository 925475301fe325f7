"""Fixtures that run the Cloudflare emulator in-process on a real loopback port.

Each test gets its own emulator (own state, log, faults and rate-limit windows) seeded with
one account and the zone ``example.com`` (see :mod:`flareport_cfemu.testing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import cloudflare
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import DEFAULT_SEED, RunningEmulator, start_emulator

StartEmulator = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
async def emulator_factory() -> AsyncIterator[StartEmulator]:
    """Start emulators with a chosen config; every one is stopped at the end of the test."""
    running: list[RunningEmulator] = []

    async def start(
        config: EmulatorConfig | None = None, *, seed: dict[str, Any] | None = DEFAULT_SEED
    ) -> RunningEmulator:
        handle = await start_emulator(config, seed=seed)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()


@pytest.fixture
async def cfemu(emulator_factory: StartEmulator) -> RunningEmulator:
    """An emulator with Cloudflare's default limits, one account and the zone example.com."""
    return await emulator_factory()


@pytest.fixture
async def acf(cfemu: RunningEmulator) -> AsyncIterator[cloudflare.AsyncCloudflare]:
    """The official async SDK client, pointed at the emulator."""
    async with cfemu.async_client() as client:
        yield client


@pytest.fixture
def scf(cfemu: RunningEmulator) -> cloudflare.Cloudflare:
    """The official sync SDK client; call it through ``asyncio.to_thread`` (the server runs on this loop)."""
    return cfemu.sync_client()
