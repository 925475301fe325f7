"""``flareport api``: settings -> logging (secrets redacted) -> the app, whose routes include /healthz, /readyz and
/metrics -> serve until SIGTERM/SIGINT -> stop gracefully (open requests get ``SHUTDOWN_TIMEOUT_S`` to finish).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import structlog
from aiohttp import web

from flareport_api.app import create_app
from flareport_common.logs import setup_logging
from flareport_common.runtime import install_stop_handlers, run, settle_gc
from flareport_common.settings import ApiSettings, load_api, load_or_exit, secret_values

log = structlog.get_logger("flareport.api")
SHUTDOWN_TIMEOUT_S = 10.0


async def serve(settings: ApiSettings) -> int:
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await site.start()
        log.info("api.listening", host=settings.host, port=settings.port)
        settle_gc()
        stop = asyncio.Event()
        install_stop_handlers(stop.set)
        await stop.wait()
        log.info("api.stopping")
    finally:
        await runner.cleanup()
    log.info("api.stopped")
    return 0


def main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="flareport api",
        description="Serve the HTTP API for admins and agents (it never calls Cloudflare). "
        "Configured by environment variables (see docs/configuration.md and docs/api.md).",
    ).parse_args(list(argv))
    settings = load_or_exit(load_api)
    setup_logging(settings.common.log_level, settings.common.log_format, service="api", secrets=secret_values(settings))
    return run(serve(settings), settings.common.event_loop)
