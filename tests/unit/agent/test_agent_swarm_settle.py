"""The Swarm watcher lists again soon while a task is coming up (swarmwatch.ServiceWatcher, swarm.settling).

A task's container starts, and the manager's events say so, a moment before its node reports the task "running":
a listing in between publishes nothing and no further event follows, so the new service waited for the next
round (120 s in the integration test that found it on a loaded CI machine)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

from flareport_agent.outbox import Outbox
from flareport_agent.swarm import settling
from flareport_agent.swarmwatch import ServiceWatcher
from flareport_agent.tracker import Tracker
from flareport_common.messages.events import ContainerStart, Inventory
from fptest.waiting import wait_for

SERVICE = {
    "ID": "svc1",
    "Spec": {
        "Name": "web",
        "Labels": {
            "flareport.enable": "true",
            "flareport.hostname": "web.example.com",
            "flareport.service": "http://w:80",
        },
        "TaskTemplate": {"ContainerSpec": {"Image": "web:1"}},
    },
}


def task(state: str, desired: str = "running") -> dict[str, Any]:
    return {"ServiceID": "svc1", "Status": {"State": state}, "DesiredState": desired}


class SlowTaskEngine:
    """A manager whose one task reads "starting" for the first ``starting_for`` listings, then "running", and whose
    event stream stays silent: only the watcher's own listings can see the task come up."""

    def __init__(self, starting_for: int) -> None:
        self.starting_for = starting_for
        self.listings = 0
        self.closed = threading.Event()
        self.api = self

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"ControlAvailable": True, "LocalNodeState": "active"}}

    def services(self) -> list[dict[str, Any]]:
        return [SERVICE]

    def tasks(self) -> list[dict[str, Any]]:
        self.listings += 1
        return [task("starting" if self.listings <= self.starting_for else "running")]

    def events(self, **_: Any) -> Iterator[dict[str, Any]]:
        return self._quiet()

    def _quiet(self) -> Iterator[dict[str, Any]]:
        self.closed.wait(30)
        yield from ()

    def close(self) -> None:
        self.closed.set()


def test_a_task_on_its_way_to_running_is_settling_one_running_failed_or_shut_down_is_not() -> None:
    for state in ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting"):
        assert settling([task(state)]), state
    for state in ("running", "failed", "rejected", "complete", "shutdown"):
        assert not settling([task(state)]), state
    assert not settling([task("preparing", desired="shutdown")]), "being taken down: nothing to wait for"
    assert not settling([task("preparing", desired="ready")]), "prepared for an update; it starts on an event"
    odd: list[Any] = ["not a task", {"Status": "odd"}]
    assert not settling(odd), "an answer of another shape waits for nothing"


async def test_a_service_whose_task_runs_after_the_events_is_reported_without_waiting_for_the_next_round() -> None:
    engine = SlowTaskEngine(starting_for=3)
    outbox = Outbox(capacity=100, last_seq=0, snapshot=lambda: Inventory(agent_id="", seq=0, containers=()))
    watcher = ServiceWatcher(lambda: engine, Tracker(), outbox, interval=120.0)
    running = asyncio.create_task(watcher.run())

    def hostnames() -> list[str]:
        _, events = outbox.peek(100)
        return [r.hostname for e in events if isinstance(e, ContainerStart) for r in e.container.rules]

    async def reported() -> bool:
        return hostnames() == ["web.example.com"]

    try:
        await wait_for(reported, timeout=15, what="the service reported")
        assert engine.listings > engine.starting_for, "listed again until the task ran"
    finally:
        running.cancel()
        engine.close()
        await asyncio.gather(running, return_exceptions=True)
    assert hostnames() == ["web.example.com"], "reported once"
