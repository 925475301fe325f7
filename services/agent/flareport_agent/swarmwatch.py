"""Watching Swarm services on a manager: list services and tasks now and then, report what changed (``swarm.py``).

Polled, not event-driven, on purpose: a manager's event stream has ``service`` events (create, update, remove) but
no event when a task starts or stops on *another* node, and "has a running task" is what publishing depends on.
Two list calls every ``interval`` seconds cost a manager next to nothing, and a service that loses its last task
keeps its hostnames for the grace period anyway, so a few seconds of delay changes nothing a visitor notices.

The engine is asked each round whether it is a Swarm manager (``GET /info``, ``Swarm.ControlAvailable``): an agent
on a plain engine, or a node that was demoted, lists nothing and reports nothing; a node that becomes a manager
starts reporting its services. When the engine cannot be reached, the services stay as last reported: the
container watcher's next snapshot (after it reconnects) carries them, and the next successful round corrects them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker

from flareport_agent import swarm
from flareport_agent.metrics import SWARM_LIST_FAILURES, SWARM_SERVICES
from flareport_agent.outbox import Outbox
from flareport_agent.tracker import Tracker
from flareport_common.logs import get_logger

log = get_logger("flareport.agent.swarm")


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
class ServiceWatcher:
    client_factory: Callable[[], docker.DockerClient]
    tracker: Tracker
    outbox: Outbox
    interval: float = 5.0
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
        try:
            while True:
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
                    except Exception as exc:  # an answer of a shape nobody expected: never end Swarm watching
                        SWARM_LIST_FAILURES.inc()
                        log.error("swarm.list_failed", error=f"{type(exc).__name__}: {exc}", retry_in=self.interval)
                await asyncio.sleep(self.interval)  # the polling period itself, see the module docstring
        finally:
            await asyncio.to_thread(self._close)
