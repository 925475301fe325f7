"""A small HTTP server for workers: ``/healthz`` (process up), ``/readyz`` (dependencies) and ``/metrics``.

Anyone who reaches the port may ask, so ``/readyz`` answers only ``{"status": ..., "checks": {name: "up"|"down"}}``:
why a dependency is down (an error text with its address or URL) is logged, never answered.

Written on ``asyncio.start_server`` rather than aiohttp: three GET routes need no web framework, and the
reconciler and the dns-worker would import aiohttp for nothing else — its import (with the TLS contexts it builds
and the CA bundle it loads) was about a third of each one's start-up CPU. One request per connection, answered
with ``Connection: close``; a request that is not a GET of a known path gets 405 or 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from flareport_common.metrics import render

ReadyCheck = Callable[[], Awaitable[bool]]

log = structlog.get_logger("flareport.health")

_HEAD_LIMIT = 8192  # request line and headers; a health probe sends a few hundred bytes
_READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """The listening server; ``cleanup()`` stops it (the name aiohttp's runner has, which callers used)."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    async def cleanup(self) -> None:
        self._server.close()
        await self._server.wait_closed()


def _json(status: int, body: object) -> tuple[int, bytes, str]:
    return status, json.dumps(body, separators=(",", ":")).encode(), "application/json; charset=utf-8"


async def start_health_server(
    host: str, port: int, ready: ReadyCheck | None = None, *, check: str = "dependencies"
) -> HealthServer:
    """Start serving in the background; the caller awaits ``cleanup()`` on shutdown. ``check`` names what
    ``ready`` looks at (``redis``, ``docker``) in the readiness answer."""

    async def readyz() -> tuple[int, bytes, str]:
        try:
            ok = True if ready is None else await ready()
        except Exception as exc:
            log.warning("health.not_ready", check=check, error=str(exc), error_type=type(exc).__name__)
            ok = False
        body = {"status": "ok" if ok else "unavailable", "checks": {check: "up" if ok else "down"}}
        return _json(200 if ok else 503, body)

    async def answer(method: str, path: str) -> tuple[int, bytes, str]:
        route = path.split("?", 1)[0]
        if route not in ("/healthz", "/readyz", "/metrics"):
            return _json(404, {"status": "not found"})
        if method != "GET":
            return _json(405, {"status": "method not allowed"})
        if route == "/healthz":
            return _json(200, {"status": "ok"})
        if route == "/readyz":
            return await readyz()
        body, content_type = render()
        return 200, body, content_type

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            method, path, *_ = head[:_HEAD_LIMIT].decode("latin-1").split(" ", 2)
            status, body, content_type = await answer(method, path)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, OSError):
            pass  # a probe that hung up, sent too much or nothing parseable: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, host, port, limit=_HEAD_LIMIT)
    return HealthServer(server)


def bound_port(runner: Any) -> int:
    """The actual port (useful when started on port 0) of a ``HealthServer`` or an aiohttp ``AppRunner``."""
    if isinstance(runner, HealthServer):
        return runner.port
    for site in runner.sites:
        server: Any = site._server  # aiohttp exposes no public accessor for the bound socket
        sockets = getattr(server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
    raise RuntimeError("health server is not listening")
