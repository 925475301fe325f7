"""Watching Docker: a thread reads the container event stream and lists containers; the event loop never blocks.

The ``docker`` SDK is blocking, and its event stream ends *silently* when the connection drops (socket proxies cut
it periodically), so one daemon thread runs this loop:

1. subscribe to ``/events`` (type=container) **first**,
2. then list the running containers and hand that snapshot over,
3. then hand over every event as it arrives, until the stream ends or fails,
4. wait with capped backoff and start again at 1.

A stream that repeats events it already delivered (Podman truncating its events file, see ``replay.py``) is
dropped and subscribed to again at once, without the backoff: the engine is fine, the stream's past is not.

Subscribing before listing leaves no gap: an event that happens while the list is being taken is in the stream and
is applied on top of the snapshot (re-applying a start the snapshot already shows is harmless). No ``since=`` is
passed on reconnect on purpose: the fresh snapshot after every (re)connect already covers whatever happened while
disconnected, and replaying old events after it would only add noise.

Events are not filtered by label on the engine: Podman 4.3 matches key-only label filters to nothing, and the
agent must see ``dockflare.`` and ``cloudflare.tunnel.`` labels too; ``tracker.py`` decides what matters.
Items reach the event loop through ``loop.call_soon_threadsafe`` onto an ``asyncio.Queue``, in stream order.

On Podman (``event_streams`` ``auto``, the default, or ``2``) a second thread keeps a second subscription half of
Podman's events tick after the first, so events reach the agent up to 125 ms sooner; ``halftick.py`` says why and
how the two streams are merged. It never lists containers nor reports a disconnection: the first stream does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import docker

from flareport_agent import halftick
from flareport_agent.metrics import (
    DOCKER_EVENT_STREAMS,
    DOCKER_EVENTS,
    DOCKER_EVENTS_FIRST,
    DOCKER_EVENTS_REPEATED,
    DOCKER_REALIGNED,
    DOCKER_RECONNECTS,
)
from flareport_agent.replay import ReplayGuard, rfc3339_ns
from flareport_common.backoff import Backoff
from flareport_common.logs import get_logger
from flareport_common.tracing import now_us

log = get_logger("flareport.agent.watcher")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The running containers as ``GET /containers/json`` lists them, taken right after (re)subscribing."""

    containers: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Event:
    raw: dict[str, Any]
    received_us: int = 0  # when the thread read it (the trace's ``agent_us``)


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


WatchItem = Snapshot | Event | Disconnected


@dataclass(slots=True)
class DockerWatcher:
    client_factory: Callable[[], docker.DockerClient]
    queue: asyncio.Queue[WatchItem]
    loop: asyncio.AbstractEventLoop
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, maximum=10.0))
    # ``auto``: a second stream on Podman only (halftick.py); ``1``: never; ``2``: whatever the engine.
    event_streams: str = "auto"
    connected: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _stream: Any = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    merge: halftick.Merge = field(default_factory=halftick.Merge)
    _second: threading.Thread | None = None
    _second_stream: Any = None
    _subscribed: threading.Condition = field(default_factory=threading.Condition)
    _second_wanted: bool = False
    _floor_ns: int | None = None  # the engine's clock when the first stream last subscribed (``ReplayGuard``)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._close_stream()
        self._close_second()
        with self._subscribed:
            self._subscribed.notify_all()

    def join(self, timeout: float = 5.0) -> None:
        for thread in (self._thread, self._second):
            if thread is not None:
                thread.join(timeout)

    def resync(self) -> None:
        """Drop the current stream so the thread resubscribes and takes a fresh snapshot (resync_inventory)."""
        self._close_stream()

    def _close_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        _close(stream)

    def _close_second(self) -> None:
        with self._lock:
            stream, self._second_stream = self._second_stream, None
        _close(stream)

    def _put(self, item: WatchItem) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            self._stop.set()  # the event loop is closed: the agent is gone

    def _run(self) -> None:
        while not self._stop.is_set():
            reason = "event stream ended"
            repeated = False
            client: docker.DockerClient | None = None
            try:
                client = self.client_factory()
                second = self._wants_second(client)
                if second:
                    self._start_second()  # its client is made while this one reads the clock and subscribes
                self._floor_ns = _engine_time_ns(client)
                guard = ReplayGuard(floor_ns=self._floor_ns)
                stream = client.events(decode=True, filters={"type": "container"})
                with self._lock:
                    # A stop while this thread was connecting found no stream to close: close it here, or the
                    # read below would block until the engine sends an event, and the agent's exit with it.
                    stopping = self._stop.is_set()
                    self._stream = None if stopping else stream
                if stopping:
                    stream.close()
                    break
                self._first_subscribed(second)
                containers = client.api.containers(filters={"status": "running"})
                self.connected = True
                self.backoff.reset()
                self.merge.snapshot(partial(self._put, Snapshot(containers)))
                for raw in stream:
                    if not isinstance(raw, dict):
                        continue
                    if not guard.fresh(raw):
                        repeated = True
                        self._close_stream()
                        break
                    self._admit(raw, halftick.FIRST)
            except Exception as exc:  # any failure of the engine or the socket: reconnect, never give up
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected = False
                with self._lock:
                    self._stream = None
                if client is not None:
                    _close_client(client)
            if self._stop.is_set():
                break
            if repeated:
                DOCKER_EVENTS_REPEATED.inc()
                log.warning(
                    "docker.events_repeated", hint="the engine repeated events it had delivered; subscribing again"
                )
                continue
            DOCKER_RECONNECTS.inc()
            self._put(Disconnected(reason))
            delay = self.backoff.next()
            log.warning("docker.stream_lost", reason=reason, retry_in=round(delay, 2))
            self._stop.wait(delay)

    def _wants_second(self, client: docker.DockerClient) -> bool:
        if self.event_streams == "auto":
            return _is_podman(client)
        return self.event_streams == "2"

    def _start_second(self) -> None:
        """Start the second stream's thread (once), before the first stream subscribes: it gets ready meanwhile."""
        if self._second is None:
            self._second = threading.Thread(target=self._run_second, name="docker-events-2", daemon=True)
            self._second.start()

    def _first_subscribed(self, second: bool) -> None:
        """The first stream's polls start now: (re)place the second stream half a tick after them."""
        self.merge.subscribed(time.monotonic())
        self._close_second()  # placed against the old subscription: it subscribes again (or ends)
        with self._subscribed:
            self._second_wanted = second
            self._subscribed.notify_all()
        DOCKER_EVENT_STREAMS.set(2 if second else 1)

    def _admit(self, raw: dict[str, Any], stream: int) -> None:
        received, read_at = now_us(), time.monotonic()
        if self.merge.admit(raw, stream, read_at, lambda: self._put(Event(raw, received))):
            DOCKER_EVENTS.labels(action=str(raw.get("Action", "")).split(":", 1)[0]).inc()
            DOCKER_EVENTS_FIRST.labels(stream="first" if stream == halftick.FIRST else "second").inc()
        elif self.merge.misaligned(read_at):
            # The two streams poll too close together: the second subscribes again, half a tick after the first.
            self.merge.realigning(read_at)
            DOCKER_REALIGNED.inc()
            self._close_second()

    def _run_second(self) -> None:
        """The second stream: subscribed half a tick after the first one's polls, its events merged with them.

        Its client is made before the first stream subscribes, and kept while its streams end on purpose (placed
        again): each placement is then only the wait for the right moment and one ``/events`` call. On a busy
        Podman a client's ``/version`` alone took hundreds of milliseconds, and a fresh agent's first events
        came before the second stream was up."""
        lead = 0.002  # how long a subscription takes to answer; measured at each one
        backoff = Backoff(initial=0.2, maximum=10.0)
        client: docker.DockerClient | None = None
        while not self._stop.is_set():
            failed = False
            stream: Any = None
            try:
                if client is None:
                    client = self.client_factory()
                with self._subscribed:
                    while not self._stop.is_set() and not (self._second_wanted and self.merge.anchor is not None):
                        self._subscribed.wait()
                    generation = self.merge.generation
                if self._stop.is_set():
                    break
                # The first stream's floor holds for this later subscription too, and asking the engine's clock
                # again (``/info``, slow on a busy Podman: a second or more) would place this stream that late.
                guard = ReplayGuard(floor_ns=self._floor_ns)
                anchor = self.merge.anchor
                if anchor is not None and self._stop.wait(_until(halftick.start_at(time.monotonic(), anchor, lead))):
                    break
                began = time.monotonic()
                stream = client.events(decode=True, filters={"type": "container"})
                lead = time.monotonic() - began
                with self._lock:
                    current = not self._stop.is_set() and generation == self.merge.generation
                    self._second_stream = stream if current else None
                if not current:
                    stream.close()
                    continue
                for raw in stream:
                    if not isinstance(raw, dict):
                        continue
                    backoff.reset()  # it delivers: a later end is no sign of a failing engine or proxy
                    if not guard.fresh(raw):
                        break  # a truncated events file: the first stream lists the containers again
                    self._admit(raw, halftick.SECOND)
                    if self._second_stream is not stream:
                        break  # closed to be placed again (or stopping)
                else:
                    with self._lock:
                        # Ended by itself (a proxy cutting streams, an engine going away): back off, as the
                        # first stream does, rather than subscribing again and again.
                        failed = self._second_stream is stream
            except Exception as exc:  # the engine or the socket failed: the first stream reports it, this retries
                with self._lock:
                    # A stream closed on purpose (placed again, stopping) fails its read: that is no failure.
                    failed = stream is None or self._second_stream is stream
                if failed:
                    log.debug("docker.second_stream_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._second_stream = None
            if failed:
                if client is not None:
                    _close_client(client)
                client = None
                self._stop.wait(backoff.next())
        if client is not None:
            _close_client(client)


def _until(moment: float) -> float:
    return max(0.0, moment - time.monotonic())


def _close(stream: Any) -> None:
    if stream is not None:
        try:
            stream.close()
        except Exception as exc:  # closing a half-dead socket may fail in many ways; the thread reconnects
            log.debug("docker.stream_close_failed", error=str(exc))


def _close_client(client: docker.DockerClient) -> None:
    try:
        client.close()
    except Exception as exc:  # the engine may already be gone; nothing to clean up then
        log.debug("docker.client_close_failed", error=str(exc))


def _is_podman(client: docker.DockerClient) -> bool:
    """Whether the engine is Podman: its ``/_ping`` answers with a ``Libpod-Api-Version`` header (or a ``Libpod``
    server). ``/version`` would say it too, but Podman runs conmon and the OCI runtime to answer it (300 ms here).
    False when unknown: one stream, as on Docker."""
    try:
        headers = client.api.get(f"{client.api.base_url}/_ping", timeout=10).headers
    except Exception as exc:  # refused or failed
        log.debug("docker.ping_failed", error=str(exc))
        return False
    return "Libpod-Api-Version" in headers or str(headers.get("Server", "")).startswith("Libpod")


def _engine_time_ns(client: docker.DockerClient) -> int | None:
    """The engine's clock, or None when it will not tell (a socket proxy that refuses ``/info``)."""
    try:
        return rfc3339_ns(client.info().get("SystemTime"))
    except Exception as exc:  # refused or failed: the replay guard then works from the stream alone
        log.debug("docker.time_unknown", error=str(exc))
        return None
