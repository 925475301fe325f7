"""``flareport reconciler`` as a process: serves health, does its work, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import aiohttp
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis, free_port
from flareport_common.keys import Keys
from flareport_common.messages import AgentEnrolled, EnsureTunnel
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker
from fptest.waiting import wait_for


def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "flareport_cli.main", "reconciler"], env=env)


async def test_process_serves_health_handles_intents_and_exits_zero_on_sigterm(
    redis_server: LocalRedis, redis: aioredis.Redis, keys: Keys, prefix: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "FLAREPORT_KEY_PREFIX": prefix,
        "FLAREPORT_HEALTH_PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    process = spawn(env)
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, timeout=20, what="the reconciler's /readyz to answer 200")
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "flareport_stream_messages_total" in await response.text()

        await Producer(redis).send(keys.intents, AgentEnrolled(agent_id="a1"))
        worker = FakeDnsWorker(redis, keys)

        async def ensure_job() -> bool:
            return any(isinstance(job, EnsureTunnel) for job in await worker.pull())

        await wait_for(ensure_job, timeout=20, what="an ensure_tunnel job from the process")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_settings_stop_the_process_with_one_clear_line() -> None:
    env = {**os.environ, "AGENT_OFFLINE_SECONDS": "soon"}
    done = subprocess.run(
        [sys.executable, "-m", "flareport_cli.main", "reconciler"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "flareport: invalid configuration: AGENT_OFFLINE_SECONDS: expected an integer, got 'soon'"
    )
