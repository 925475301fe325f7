"""Live updates: ``GET /ui/events`` is a server-sent event stream that says "changed" when the read model changes.

One watcher per API process (not per browser) reads the read model's fingerprint (``fingerprint.py``: four small
reads whatever the number of agents and rules) every ``FLAREPORT_UI_EVENTS_SECONDS`` while at least one browser
listens; fifty open dashboards still cost one check, and no open dashboard costs none.

The event carries only the fingerprint. Each page carries the fingerprint it was rendered from (``<body
data-version>``); the page's script re-fetches the page and swaps its ``<main>`` whenever the stream's version is
not the one the page shows, so a change made between rendering and subscribing is not missed, and what is shown
always comes from the same server-side rendering as a reload (progressive enhancement: without JavaScript the
pages are simply static).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from flareport_api.state import CONTEXT, ApiContext
from flareport_api.ui.fingerprint import fingerprint
from flareport_api.ui.guards import UI

log = structlog.get_logger("flareport.api.ui")
KEEPALIVE_S = 15.0


class Watcher:
    def __init__(self, ctx: ApiContext, period_s: float) -> None:
        self._ctx = ctx
        self._period = period_s
        self._listeners: set[asyncio.Queue[str]] = set()
        self._wake = asyncio.Event()
        self.version = ""
        self.closed = False

    def subscribe(self) -> asyncio.Queue[str]:
        """A queue of the versions the watcher reads from now on. Its own last version is not handed over: it may
        be up to one period old, older than the page (the stream reads a fresh one for its first event)."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._listeners.add(queue)
        self._wake.set()
        return queue

    def close(self) -> None:
        """End every open stream now (API shutdown) instead of holding the process until the shutdown timeout."""
        self.closed = True
        for queue in list(self._listeners):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait("")

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._listeners.discard(queue)

    async def run(self) -> None:
        while True:
            if not self._listeners:
                self._wake.clear()
                await self._wake.wait()
            try:
                version = await fingerprint(self._ctx)
            except Exception as exc:  # Redis away: the pages say so on their own; keep the stream open
                log.warning("ui.live_fingerprint_failed", error=str(exc))
                version = self.version
            if version != self.version:
                self.version = version
                for queue in list(self._listeners):
                    if queue.full():
                        queue.get_nowait()  # only the newest version matters
                    queue.put_nowait(version)
            await asyncio.sleep(self._period)


WATCHER = web.AppKey("ui_watcher", Watcher)


async def watcher_ctx(app: web.Application) -> AsyncIterator[None]:
    watcher = Watcher(app[CONTEXT], app[CONTEXT].settings.ui_events_seconds)
    app[WATCHER] = watcher
    task = asyncio.create_task(watcher.run(), name="ui-live-watcher")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_streams(app: web.Application) -> None:
    app[WATCHER].close()


async def events(request: web.Request) -> web.StreamResponse:
    if await request.app[UI].sessions.load(request) is None:
        raise web.HTTPUnauthorized(text="log in first")
    watcher = request.app[WATCHER]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    queue = watcher.subscribe()
    try:
        # Subscribed first, then read: a change after this read reaches the queue, none falls in between.
        sent = ""
        try:
            sent = await fingerprint(request.app[CONTEXT])
        except Exception as exc:  # Redis away: the page keeps its own version until the watcher reads one
            log.warning("ui.live_fingerprint_failed", error=str(exc))
        else:
            await response.write(f'event: changed\ndata: {{"version": "{sent}"}}\n\n'.encode())
        while not watcher.closed:
            try:
                version = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if not version:
                break
            if version != sent:  # the watcher's first read after this subscription is usually the same
                sent = version
                await response.write(f'event: changed\ndata: {{"version": "{version}"}}\n\n'.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watcher.unsubscribe(queue)
    return response
