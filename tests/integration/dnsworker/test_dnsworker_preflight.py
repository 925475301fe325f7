"""The dns-worker process checks its token once at start, as ``flareport doctor`` does, and logs what is missing as
warnings without stopping: a token without DNS permission is named, and the worker still stops cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aiohttp

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from fptest.dnsworker_harness import process_env

TOKEN = "worker-token-without-dns-4e1b"
PERMISSIONS = [
    "Zone > Zone > Read",
    "Account > Cloudflare Tunnel > Edit",
    "Account > Access: Apps and Policies > Edit",
    "Account > Access: Organizations, Identity Providers, and Groups > Read",
    "Account > Account Settings > Read",
]


async def test_the_worker_logs_a_missing_permission_at_start_and_keeps_running(
    emu: RunningEmulator, redis_server: LocalRedis, prefix: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(emu.root_url + "/__emulator/tokens", json={"token": TOKEN, "permissions": PERMISSIONS}) as done,
    ):
        assert done.status == 200
    env = process_env(redis_server.url, prefix, emu, TOKEN)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flareport_cli", "dns-worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    seen: list[str] = []
    try:
        assert process.stderr is not None
        stderr = process.stderr

        async def until_summary() -> dict[str, Any]:
            while line := (await stderr.readline()).decode():
                seen.append(line)
                event = json.loads(line) if line.startswith("{") else {}
                if event.get("event") in ("preflight.failed", "preflight.ok"):
                    return event
            raise AssertionError("the worker ended before its preflight:\n" + "".join(seen))

        summary = await asyncio.wait_for(until_summary(), timeout=20)
        assert summary["event"] == "preflight.failed" and summary["failed"] == ["dns"]
        checks = [json.loads(line) for line in seen if '"preflight.check"' in line]
        assert [(c["check"], c["result"], c["permission"]) for c in checks] == [("dns", "missing", "Zone > DNS > Edit")]
        assert process.returncode is None, "a failed preflight never stops the worker"
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(asyncio.gather(stderr.read(), process.wait()), timeout=20)
        seen.append(rest.decode())
        assert process.returncode == 0
        assert TOKEN not in "".join(seen)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
