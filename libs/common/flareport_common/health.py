"""A small HTTP server for workers: ``/healthz`` (process up), ``/readyz`` (dependencies) and ``/metrics``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from flareport_common.metrics import render

ReadyCheck = Callable[[], Awaitable[bool]]


def health_app(ready: ReadyCheck | None = None) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            ok = True if ready is None else await ready()
        except Exception as exc:
            return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
        return web.json_response({"status": "ok" if ok else "unavailable"}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health_server(host: str, port: int, ready: ReadyCheck | None = None) -> web.AppRunner:
    """Start serving in the background; the caller awaits ``runner.cleanup()`` on shutdown."""
    runner = web.AppRunner(health_app(ready), access_log=None)
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
