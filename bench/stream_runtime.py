"""Throughput of the stream runtime: N small messages consumed with XACK by one consumer on one core.

Starts its own redis-server on a free loopback port, fills a stream, then times ``run_burst`` (read, decode,
handle, ack) and prints messages per second. Usage: python bench/stream_runtime.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.messages import ContainerInfo, ContainerStart, EventMessage, Rule
from flareport_common.streams import ConsumerConfig, Delivery, Producer, StreamConsumer


async def measure(url: str, messages: int, concurrency: int) -> dict[str, float]:
    client = aioredis.Redis.from_url(url)
    stream = "bench:events"
    sample = [
        ContainerStart(
            agent_id=f"agent-{i % 50}",
            seq=i,
            container=ContainerInfo(
                container_id=f"{i:064x}",
                name=f"web-{i}",
                rules=(Rule(hostname=f"app-{i}.example.com", service="http://web:8080"),),
            ),
        )
        for i in range(messages)
    ]
    producer = Producer(client)
    started = time.perf_counter()
    for chunk in range(0, messages, 500):
        await producer.send_many(stream, sample[chunk : chunk + 500])
    produce_s = time.perf_counter() - started

    handled = 0

    async def handle(message: EventMessage, delivery: Delivery) -> None:
        nonlocal handled
        handled += 1

    config = ConsumerConfig(
        stream=stream, group="bench", consumer="c1", dead_letter_stream="bench:dead", count=500, concurrency=concurrency
    )
    consumer: StreamConsumer[EventMessage] = StreamConsumer(client, config, EventMessage, handle)
    started = time.perf_counter()
    done = await consumer.run_burst()
    consume_s = time.perf_counter() - started
    pending = (await client.xpending(stream, "bench"))["pending"]
    await client.aclose()
    assert done == handled == messages and pending == 0, "every message must be handled and acknowledged"
    return {
        "messages": messages,
        "produce_per_s": round(messages / produce_s),
        "consume_ack_per_s": round(messages / consume_s),
        "consume_seconds": round(consume_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = LocalRedis(Path(workdir))
        server.start()
        try:
            result = asyncio.run(measure(server.url, args.messages, args.concurrency))
        finally:
            server.stop()
    print(json.dumps(result))
    print(
        f"stream runtime: {result['messages']} messages consumed and acked in {result['consume_seconds']} s "
        f"= {result['consume_ack_per_s']} msg/s (one consumer, one core); produced at {result['produce_per_s']} msg/s"
    )


if __name__ == "__main__":
    main()
