"""``flareport reconciler``: settings -> logging (secrets redacted) -> one replica with its health server
(/healthz, /readyz, /metrics) until SIGTERM/SIGINT -> stop gracefully.

On SIGTERM the replica stops reading, lets in-flight handlers finish (what does not finish stays pending in
its stream for another replica), stops the background loop and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import structlog

from flareport_common.health import start_health_server
from flareport_common.logs import setup_logging
from flareport_common.redisconn import connect, ready
from flareport_common.runtime import consumer_name, install_stop_handlers, run, settle_gc
from flareport_common.settings import ReconcilerSettings, load_or_exit, load_reconciler, secret_values
from flareport_reconciler import failover
from flareport_reconciler.service import Replica

log = structlog.get_logger("flareport.reconciler")


async def serve(settings: ReconcilerSettings) -> int:
    # Up to MAX_RUNNING event batches, 16 result and 8 intent handlers, three blocking reads and the background
    # loop hold connections at once; the default pool (64) would be too tight under a burst.
    redis = connect(settings.common, max_connections=128)
    replica = Replica(redis, settings, consumer_name("reconciler"))
    install_stop_handlers(replica.stop)

    async def redis_ready() -> bool:
        return await ready(redis)

    runner = await start_health_server("0.0.0.0", settings.health_port, redis_ready, check="redis")
    log.info("reconciler.started", health_port=settings.health_port)
    settle_gc()
    # Heals what a Redis failover or restart lost (flareport_reconciler.failover); stops with the replica.
    # Its checks share the stream reading's wake-ups: an idle replica wakes once per 10 s for both.
    watch = failover.Watch(replica.reconciler)
    replica.reading.share_wakes(watch.awake)
    healer = asyncio.create_task(watch.run(), name="failover-watch")
    try:
        await replica.run()
    finally:
        watch.stop()
        await healer
        await runner.cleanup()
        await redis.aclose()
        log.info("reconciler.stopped")
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="flareport reconciler",
        description="Turn agent events and admin intents into desired Cloudflare state, jobs and agent commands. "
        "Configured by environment variables (see docs/configuration.md and docs/reconciler.md).",
    )
    parser.parse_args(list(argv))
    settings = load_or_exit(load_reconciler)
    setup_logging(
        settings.common.log_level, settings.common.log_format, service="reconciler", secrets=secret_values(settings)
    )
    return run(serve(settings), settings.common.event_loop)
