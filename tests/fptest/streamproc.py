"""A consumer process for stream-runtime tests that need a real crash or a real SIGTERM.

Usage: python -m fptest.streamproc REDIS_URL STREAM GROUP CONSUMER MODE [HANDLER_SECONDS] [GRACE_SECONDS]
MODE "crash": the handler records that it started, then the process dies without cleanup (os._exit).
MODE "slow": the handler records start, takes HANDLER_SECONDS, records done; SIGTERM stops the consumer.
Progress goes to the Redis list ``<STREAM>:log`` so the test can wait on it.
"""

from __future__ import annotations

import asyncio
import os
import sys

import redis.asyncio as aioredis

from flareport_common.runtime import install_stop_handlers
from flareport_common.streams import ConsumerConfig, Delivery, StreamConsumer
from fptest.messages import Work


async def main(argv: list[str]) -> int:
    url, stream, group, consumer, mode = argv[:5]
    handler_seconds = float(argv[5]) if len(argv) > 5 else 2.0
    grace = float(argv[6]) if len(argv) > 6 else 10.0
    client = aioredis.Redis.from_url(url)
    log = f"{stream}:log"

    async def handle(message: Work, delivery: Delivery) -> None:
        await client.rpush(log, f"started:{message.n}:{os.getpid()}")
        if mode == "crash":
            os._exit(3)
        await asyncio.sleep(handler_seconds)
        await client.rpush(log, f"done:{message.n}:{os.getpid()}")

    config = ConsumerConfig(
        stream=stream,
        group=group,
        consumer=consumer,
        dead_letter_stream=f"{stream}:dead",
        block_ms=100,
        grace_seconds=grace,
        claim_idle_ms=60_000,
    )
    runtime: StreamConsumer[Work] = StreamConsumer(client, config, Work, handle)
    install_stop_handlers(runtime.stop)
    await runtime.ensure_group()
    await client.rpush(log, f"ready:{os.getpid()}")
    await runtime.run()
    await client.rpush(log, f"exited:{os.getpid()}")
    await client.aclose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
