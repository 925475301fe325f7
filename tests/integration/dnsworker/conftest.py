"""An in-process emulator (one account, zone example.com, one tunnel with a dashboard-made rule) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ACCOUNT_ID, OLD_ZONE_CREATED_ON, ZONE_ID, RunningEmulator, start_emulator

TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
DASHBOARD_RULE = {"hostname": "dash.example.com", "service": "http://10.0.0.9:8080"}
FOREIGN_RECORD = {"zone_id": ZONE_ID, "name": "mail.example.com", "type": "A", "content": "192.0.2.10"}
SEED: dict[str, Any] = {
    "accounts": [{"id": ACCOUNT_ID, "name": "Flareport test"}],
    "zones": [{"id": ZONE_ID, "name": "example.com", "account_id": ACCOUNT_ID, "created_on": OLD_ZONE_CREATED_ON}],
    "dns_records": [FOREIGN_RECORD],
    "tunnels": [
        {
            "id": TUNNEL_ID,
            "name": "dashboard-tunnel",
            "config_src": "cloudflare",
            "config": {"ingress": [DASHBOARD_RULE, {"service": "http_status:404"}]},
        }
    ],
}


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(EmulatorConfig(), seed=SEED)
    try:
        yield running
    finally:
        await running.stop()
