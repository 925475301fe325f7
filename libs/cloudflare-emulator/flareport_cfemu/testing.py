"""Run an emulator in-process on a real loopback port - the harness for tests and benchmarks.

``async with running_emulator() as emu:`` starts the app with ``web.AppRunner`` on port 0, seeds
one account and one zone (``example.com``) unless told otherwise, and gives official SDK
clients pointed at it.  Retries are off by default so a caller sees exactly what the emulator
sent.  Kept in the package (not in a conftest) so benchmarks and other test suites can reuse it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import cloudflare
from aiohttp import web

from flareport_cfemu.app import create_app
from flareport_cfemu.client import EmulatorControl
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.runtime import EMULATOR, Emulator
from flareport_cfemu.state import EmulatorState

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
ZONE_ID = "fedcba9876543210fedcba9876543210"
ZONE_NAME = "example.com"
TOKEN = "test-token"  # noqa: S105 - the emulator accepts any token by default
# The default zone predates Cloudflare's 200-record quota of new Free zones (September 2024): suites and benchmarks
# that write thousands of records use it; a test of the quota seeds a zone created later.
OLD_ZONE_CREATED_ON = "2024-01-01T00:00:00.000000Z"
DEFAULT_SEED: dict[str, Any] = {
    "accounts": [{"id": ACCOUNT_ID, "name": "Flareport test"}],
    "zones": [{"id": ZONE_ID, "name": ZONE_NAME, "account_id": ACCOUNT_ID, "created_on": OLD_ZONE_CREATED_ON}],
}


@dataclass
class RunningEmulator:
    root_url: str
    emulator: Emulator
    runner: web.AppRunner
    account_id: str = ACCOUNT_ID
    zone_id: str = ZONE_ID
    zone_name: str = ZONE_NAME

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to the SDK (``.../client/v4``)."""
        return self.root_url + "/client/v4"

    def sync_client(self, *, token: str = TOKEN, max_retries: int = 0, **kwargs: Any) -> cloudflare.Cloudflare:
        return cloudflare.Cloudflare(api_token=token, base_url=self.base_url, max_retries=max_retries, **kwargs)

    def async_client(self, *, token: str = TOKEN, max_retries: int = 0, **kwargs: Any) -> cloudflare.AsyncCloudflare:
        return cloudflare.AsyncCloudflare(api_token=token, base_url=self.base_url, max_retries=max_retries, **kwargs)

    def control(self) -> EmulatorControl:
        """An HTTP control client (close it, or use it as an async context manager)."""
        return EmulatorControl(self.root_url)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_emulator(
    config: EmulatorConfig | None = None,
    *,
    state: EmulatorState | None = None,
    seed: dict[str, Any] | None = DEFAULT_SEED,
    host: str = "127.0.0.1",
) -> RunningEmulator:
    """Start an emulator on a free port; the caller must ``await running.stop()``."""
    app = create_app(state, config=config or EmulatorConfig())
    if seed:
        app[EMULATOR].seed(seed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    return RunningEmulator(root_url=f"http://{host}:{port}", emulator=app[EMULATOR], runner=runner)


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None,
    *,
    state: EmulatorState | None = None,
    seed: dict[str, Any] | None = DEFAULT_SEED,
) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(config, state=state, seed=seed)
    try:
        yield running
    finally:
        await running.stop()
