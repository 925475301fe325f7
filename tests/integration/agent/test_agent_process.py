"""``flareport agent`` as a real process: configured by environment, registers, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from flareport_cli.localpodman import BUSYBOX_IMAGE
from fptest.agent_harness import KEY
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for


async def test_agent_process_registers_and_exits_cleanly_on_sigterm(
    master: MasterDouble, docker_host: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DOCKFLARE_MASTER_URL": master.url,
        "DOCKFLARE_API_KEY": KEY,
        "DOCKER_HOST": docker_host,
        "CLOUDFLARED_IMAGE": BUSYBOX_IMAGE,
        "AGENT_DATA_DIR": str(tmp_path / "data"),
        "FLAREPORT_HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flareport_cli.main", "agent", env=env, stderr=asyncio.subprocess.PIPE
    )

    async def registered_and_reported() -> bool:
        return bool(master.registrations) and any(type(e).__name__ == "Inventory" for e in master.events)

    try:
        await wait_for(registered_and_reported, timeout=30, what="the agent process to register and report")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert (tmp_path / "data" / "state.json").exists()
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines() if line.startswith("{")]
    assert "agent.started" in events and "master.registered" in events, events
    assert events[-1] == "agent.stopped", "the last line says the agent stopped cleanly"


async def test_bad_settings_stop_the_process_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "FLAREPORT_MASTER_URL": "ftp://nowhere", "FLAREPORT_API_KEY": "k"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flareport_cli.main", "agent", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "FLAREPORT_MASTER_URL" in stderr.decode()
