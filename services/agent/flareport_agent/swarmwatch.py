"""Watching Swarm services on a manager: list services and tasks now and then, report what changed (``swarm.py``).

Listed, not followed event by event: a manager's event stream has ``service`` events (create, update, remove) but
no event when a task starts or stops on *another* node, and "has a running task" is what publishing depends on.
So the services and tasks are listed every ``interval`` seconds (two list calls cost a manager next to nothing),
and sooner when the manager's own events say something changed: a thread (``EventNudge``) reads its ``service``
and ``container`` events and only wakes the loop, which then lists again (bursts coalesced). A service created,
updated, scaled or removed, or a task starting on the manager itself, shows at once; a task on another node
within ``interval``, and a service that loses its last task keeps its hostnames for the grace period anyway.
While a task is still coming up (``swarm.coming_up``) the loop lists again soon (``SettlePacer``): a container's
start event comes a moment before its node reports the task running, and no event follows to wake the loop again.

The engine is asked each round whether it is a Swarm manager (``GET /info``, ``Swarm.ControlAvailable``): an agent
on a plain engine, or a node that was demoted, lists nothing and reports nothing; a node that becomes a manager
starts reporting its services. A plain engine is asked only every ``plain_interval`` (60 s): becoming a manager is
an operator's rare act, and ``/info`` every 5 s was a large part of an idle agent's CPU (and the engine's). When the
engine cannot be reached, the services stay as last reported: the container watcher's next snapshot (after it
reconnects) carries them, and the next successful round corrects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker

from flareport_agent import swarm
from flareport_agent.metrics import SWARM_LIST_FAILURES, SWARM_SERVICES
from flareport_agent.outbox import Outbox
from flareport_agent.tracker import Tracker
from flareport_common.backoff import Backoff
from flareport_common.logs import get_logger

log = get_logger("flareport.agent.swarm")
# After a nudge, wait this long before listing: one change (a service created, its task scheduled and started)
# comes as a burst of events, and one listing answers them all.
COALESCE_SECONDS = 0.25
# While a task is coming up (``swarm.coming_up``) the next listing comes after about this (``SettlePacer``).
SETTLE_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class Listing:
    """One round: every service and task of the Swarm, or ``manager=False`` (nothing listed)."""

    manager: bool
    services: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


def is_manager(client: docker.DockerClient) -> bool:
    """True when this engine can run Swarm services: a manager of an active Swarm."""
    info = client.info().get("Swarm") or {}
    return bool(info.get("ControlAvailable")) and info.get("LocalNodeState") == "active"


def list_swarm(client: docker.DockerClient) -> Listing:
    if not is_manager(client):
        return Listing(False, [], [])
    services: list[dict[str, Any]] = client.api.services()
    # Not filtered by desired state: a task an update is bringing up wants "ready" first (swarm.py).
    tasks: list[dict[str, Any]] = client.api.tasks()
    return Listing(True, services, tasks)


@dataclass(slots=True)
class EventNudge:
    """Reads the engine's service and container events in a thread and sets ``wake`` for each one, and once each
    time it has subscribed (changes made before that are in no stream it reads); reconnects with capped backoff,
    quietly (the listing loop works without it, only later)."""

    client_factory: Callable[[], docker.DockerClient]
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stream: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="swarm-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # closing a half-dead socket may fail in many ways
                stream.close()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = Backoff(initial=1.0, maximum=30.0)
        while not self._stop.is_set():
            client: docker.DockerClient | None = None
            try:
                client = self.client_factory()
                stream = client.events(decode=True, filters={"type": ["service", "container"]})
                with self._lock:
                    self._stream = stream
                if self._stop.is_set():
                    break
                backoff.reset()
                # Subscribed only now: a change made since the last listing (the first one runs before this thread
                # starts; a reconnect follows an outage) came before the stream and would wait for the next round.
                # One more listing answers it.
                self.loop.call_soon_threadsafe(self.wake.set)
                for _ in stream:
                    self.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:
                break  # the event loop is closed: the agent is gone
            except Exception as exc:  # the engine or the socket failed: the listing loop carries on regardless
                log.debug("swarm.events_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._stream = None
                if client is not None:
                    with contextlib.suppress(Exception):  # the engine may already be gone
                        client.close()
            self._stop.wait(backoff.next())


@dataclass(slots=True)
class SettlePacer:
    """How soon to list again while tasks are coming up: ``SETTLE_SECONDS`` after a task starts coming up, doubling
    while no other task does, up to ``maximum`` (the round's interval). A task that starts is published within a
    second; one that can never be scheduled (no node fits it) costs no more listings than an idle round after a few
    seconds, and does not slow the next task: a task not seen coming up before starts the pace over."""

    maximum: float
    _seen: frozenset[str] = frozenset()
    _backoff: Backoff = field(init=False)

    def __post_init__(self) -> None:
        self._backoff = Backoff(initial=SETTLE_SECONDS, maximum=self.maximum)

    def next(self, coming_up: frozenset[str]) -> float | None:
        """The pause before the next listing, or None when nothing is coming up (the round's own pause holds)."""
        if coming_up - self._seen:
            self._backoff.reset()
        self._seen = coming_up
        return self._backoff.next() if coming_up else None


@dataclass(slots=True)
class ServiceWatcher:
    client_factory: Callable[[], docker.DockerClient]
    tracker: Tracker
    outbox: Outbox
    interval: float = 5.0
    plain_interval: float = 60.0  # how often an engine that is not a manager is asked again
    _client: docker.DockerClient | None = None
    _manager: bool | None = None

    def _list(self) -> Listing:
        if self._client is None:
            self._client = self.client_factory()
        try:
            return list_swarm(self._client)
        except Exception:
            self._close()  # a fresh client next round: the old one's connection may be dead
            raise

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # the engine may already be gone; nothing to clean up then
                log.debug("swarm.client_close_failed", error=str(exc))

    def apply(self, listing: Listing) -> None:
        """Report the difference between what the master was told and this listing."""
        if listing.manager != self._manager:
            self._manager = listing.manager
            log.info("swarm.mode", manager=listing.manager)
        after = swarm.published(
            listing.services,
            listing.tasks,
            label_prefix=self.tracker.label_prefix,
            ignore_label=self.tracker.ignore_label,
            already=self.tracker.services.keys(),
        )
        events = swarm.changes(self.tracker.services, after, (str(s.get("ID") or "") for s in listing.services))
        self.tracker.services = after
        SWARM_SERVICES.set(len(after))
        for event in events:
            container = getattr(event, "container", None)
            if container is not None:
                for error in container.errors:
                    log.warning("labels.invalid", service=container.name, label=error.label, reason=error.reason)
            self.outbox.put(event)

    async def run(self) -> None:
        wake = asyncio.Event()
        nudge: EventNudge | None = None
        pacer = SettlePacer(self.interval)
        try:
            while True:
                wake.clear()  # before listing: an event during the listing makes another round
                soon: float | None = None
                try:
                    listing = await asyncio.to_thread(self._list)
                except Exception as exc:  # engine unreachable or refusing: keep what was reported, try again
                    SWARM_LIST_FAILURES.inc()
                    # Loud only on a manager: behind a socket proxy that refuses /info on a plain engine, this
                    # fails every round and there are no services to miss.
                    report = log.warning if self._manager else log.debug
                    report("swarm.list_failed", error=f"{type(exc).__name__}: {exc}", retry_in=self.interval)
                else:
                    try:
                        self.apply(listing)
                        soon = pacer.next(swarm.coming_up(listing.tasks))
                    except Exception as exc:  # an answer of a shape nobody expected: never end Swarm watching
                        SWARM_LIST_FAILURES.inc()
                        log.error("swarm.list_failed", error=f"{type(exc).__name__}: {exc}", retry_in=self.interval)
                if self._manager and nudge is None:
                    nudge = EventNudge(self.client_factory, asyncio.get_running_loop(), wake)
                    nudge.start()
                # An engine that answered "not a manager" is asked less often; one not answered yet, as often.
                pause = self.plain_interval if self._manager is False else self.interval
                if soon is not None:
                    pause = min(pause, soon)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), pause)
                    await asyncio.sleep(COALESCE_SECONDS)  # woken: let the rest of the burst arrive
        finally:
            if nudge is not None:
                nudge.stop()
                await asyncio.to_thread(nudge.join)
            await asyncio.to_thread(self._close)
