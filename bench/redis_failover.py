"""How long a Redis Sentinel failover stops Flareport's writes, and what it loses, on loopback.

A primary, one replica and three Sentinels (``flareport_cli.localsentinel``, ``down-after-milliseconds`` as given)
run as real processes. A writer uses the services' own client (``flareport_common.redisconn.connect`` with
REDIS_SENTINELS) and appends to a stream every ``--interval-ms``, as the API does with agents' events, retrying
on errors as every service loop does. Each round SIGKILLs the primary and measures:

* detection + promotion: from the kill until the Sentinels name a new primary that accepts writes;
* recovery: from the kill until the writer's first successful write after it (what a service notices);
* lost: entries the old primary acknowledged that the new one does not hold (asynchronous replication), for a
  plain write and for one followed by ``redisconn.replicated`` (WAIT, what agent keys and enrolments use).

Then the old primary is started again (it comes back as a replica) before the next round.

Usage: python bench/redis_failover.py [--rounds 3] [--down-after-ms 1000] [--interval-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flareport_cli.localsentinel import LocalSentinelSet
from flareport_common.redisconn import connect, replicated
from flareport_common.settings import load_reconciler

STREAM = "bench:failover"
DURABLE = "bench:failover-durable"


class Writer:
    """Appends to STREAM until stopped; remembers every id the primary acknowledged and when writes failed."""

    def __init__(self, redis: aioredis.Redis, interval_s: float) -> None:
        self.redis = redis
        self.interval_s = interval_s
        self.acked: list[bytes | str] = []
        self.first_ok_after: float | None = None
        self.recovered = asyncio.Event()
        self.since = float("inf")
        self.stopping = False

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            try:
                entry = await self.redis.xadd(STREAM, {"n": str(n)})
            except (RedisConnectionError, RedisTimeoutError):
                await asyncio.sleep(0.05)  # what the services' loops do: back off, try again
                continue
            n += 1
            self.acked.append(entry)
            now = time.monotonic()
            if self.first_ok_after is None and now > self.since:
                self.first_ok_after = now
                self.recovered.set()
            await asyncio.sleep(self.interval_s)


async def one_round(nodes: LocalSentinelSet, redis: aioredis.Redis, interval_s: float) -> dict[str, Any]:
    await asyncio.to_thread(nodes.heal)
    await redis.delete(STREAM, DURABLE)
    writer = Writer(redis, interval_s)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(1.0)  # a steady flow of writes before the crash
    # One write that must not be lost, acknowledged by a replica before the crash.
    settings = load_reconciler(nodes.env).common
    await redis.set(DURABLE, "kept")
    durable_acked = await replicated(redis, settings.redis_nodes, "bench:replicated", what="bench")
    old = await asyncio.to_thread(nodes.kill_master)
    killed = time.monotonic()
    writer.since = killed
    acked_before = len(writer.acked)
    await asyncio.to_thread(nodes.wait_failover, old.port, 60.0)
    promoted = time.monotonic()
    await writer.recovered.wait()
    assert writer.first_ok_after is not None
    writer.stopping = True
    await task
    held = {entry for entry, _ in await redis.xrange(STREAM) or []}
    lost = [entry for entry in writer.acked[:acked_before] if entry not in held]
    return {
        "promotion_s": promoted - killed,
        "recovery_s": writer.first_ok_after - killed,
        "acked_before_kill": acked_before,
        "lost": len(lost),
        "durable_acked": durable_acked,
        "durable_kept": await redis.get(DURABLE) == b"kept",
    }


async def main(rounds: int, down_after_ms: int, interval_ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = LocalSentinelSet(Path(tmp), down_after_ms=down_after_ms)
        await asyncio.to_thread(nodes.start)
        redis = connect(load_reconciler(nodes.env).common, max_connections=8)
        try:
            results = [await one_round(nodes, redis, interval_ms / 1000) for _ in range(rounds)]
        finally:
            await redis.aclose()
            nodes.stop()
    for index, result in enumerate(results, 1):
        print(
            f"round {index}: promoted {result['promotion_s']:.2f}s, writes back {result['recovery_s']:.2f}s after "
            f"the kill; lost {result['lost']} of {result['acked_before_kill']} acknowledged entries; WAIT-ed write "
            f"{'kept' if result['durable_kept'] else 'LOST'} (replica acknowledged: {result['durable_acked']})"
        )
    recovery = [r["recovery_s"] for r in results]
    print(
        f"down-after-milliseconds {down_after_ms}: recovery median {statistics.median(recovery):.2f}s, "
        f"max {max(recovery):.2f}s; lost entries in total {sum(r['lost'] for r in results)}; "
        f"WAIT-ed writes lost {sum(not r['durable_kept'] for r in results)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down-after-ms", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.down_after_ms, args.interval_ms))
