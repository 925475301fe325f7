"""A small HTTP server for workers: ``/healthz`` (process up), ``/readyz`` (dependencies) and ``/metrics``.

Anyone who reaches the port may ask, so ``/readyz`` answers only ``{"status": ..., "checks": {name: "up"|"down"}}``:
why a dependency is down (an error text with its address or URL) is logged, never answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from flareport_common.metrics import render

ReadyCheck = Callable[[], Awaitable[bool]]

log = structlog.get_logger("flareport.health")


def health_app(ready: ReadyCheck | None = None, *, check: str = "dependencies") -> web.Application:
    """``check`` names what ``ready`` looks at (``redis``, ``docker``) in the readiness answer."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            ok = True if ready is None else await ready()
        except Exception as exc:
            log.warning("health.not_ready", check=check, error=str(exc), error_type=type(exc).__name__)
            ok = False
        body = {"status": "ok" if ok else "unavailable", "checks": {check: "up" if ok else "down"}}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health_server(
    host: str, port: int, ready: ReadyCheck | None = None, *, check: str = "dependencies"
) -> web.AppRunner:
    """Start serving in the background; the caller awaits ``runner.cleanup()`` on shutdown."""
    runner = web.AppRunner(health_app(ready, check=check), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The actual port (useful when started on port 0)."""
    for site in runner.sites:
        server: Any = site._server  # aiohttp exposes no public accessor for the bound socket
        sockets = getattr(server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
    raise RuntimeError("health server is not listening")
