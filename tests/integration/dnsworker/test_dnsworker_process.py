"""``flareport dns-worker`` as a real process: converges a job against the emulator and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, SyncDnsZone
from fptest.dnsworker_harness import job_results, process_env, records_named, send
from fptest.waiting import wait_for

from .conftest import TUNNEL_ID


async def test_worker_process_applies_a_job_and_exits_zero_on_sigterm(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    env = process_env(redis_server.url, prefix, emu)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flareport_cli", "dns-worker", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        job = SyncDnsZone(
            zone_name="example.com",
            version="v1",
            records=(DesiredRecord(name="proc.example.com", tunnel_id=TUNNEL_ID),),
        )
        await send(redis, keys, [job])

        async def answered() -> bool:
            return bool(await job_results(redis, keys))

        await wait_for(answered, timeout=20, what="the worker process to publish a result")
        assert records_named(emu, "proc.example.com")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0, "SIGTERM must end the worker cleanly"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bad_settings_stop_the_process_with_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CF_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flareport_cli", "dns-worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 2
    assert "CLOUDFLARE_API_TOKEN" in err.decode(), "the message must name the missing variable"
