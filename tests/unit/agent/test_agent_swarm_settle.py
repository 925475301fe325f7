"""The Swarm watcher lists again soon while a task is coming up (swarmwatch.ServiceWatcher and SettlePacer,
swarm.coming_up).

A task's container starts, and the manager's events say so, a moment before its node reports the task "running":
a listing in between publishes nothing and no further event follows, so the new service waited for the next
round (120 s in the integration test that found it on a loaded CI machine)."""

from __future__ import annotations

import asyncio
from typing import Any

from flareport_agent.outbox import Outbox
from flareport_agent.swarm import coming_up
from flareport_agent.swarmwatch import SETTLE_SECONDS, ServiceWatcher, SettlePacer
from flareport_agent.tracker import Tracker
from flareport_common.messages.events import ContainerStart, Inventory
from fptest.quiet_engine import QuietEngine
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


def task(state: str, desired: str = "running", task_id: str = "t1") -> dict[str, Any]:
    return {"ID": task_id, "ServiceID": "svc1", "Status": {"State": state}, "DesiredState": desired}


class SlowTaskEngine(QuietEngine):
    """A manager whose one task reads "starting" for the first ``starting_for`` listings, then "running", and whose
    event stream stays silent: only the watcher's own listings can see the task come up."""

    def __init__(self, starting_for: int) -> None:
        super().__init__()
        self.starting_for = starting_for
        self.listings = 0
        self.api = self

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"ControlAvailable": True, "LocalNodeState": "active"}}

    def services(self) -> list[dict[str, Any]]:
        return [SERVICE]

    def tasks(self) -> list[dict[str, Any]]:
        self.listings += 1
        return [task("starting" if self.listings <= self.starting_for else "running")]


def test_a_task_on_its_way_to_running_is_coming_up_one_running_failed_or_shut_down_is_not() -> None:
    for state in ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting"):
        assert coming_up([task(state)]) == {"t1"}, state
    for state in ("running", "failed", "rejected", "complete", "shutdown"):
        assert coming_up([task(state)]) == set(), state
    assert coming_up([task("preparing", desired="shutdown")]) == set(), "being taken down: nothing to wait for"
    assert coming_up([task("preparing", desired="ready")]) == set(), "prepared for an update; it starts on an event"
    odd: list[Any] = ["not a task", {"Status": "odd"}]
    assert coming_up(odd) == set(), "an answer of another shape waits for nothing"


def test_the_pace_slows_while_the_same_task_stays_stuck_and_starts_over_for_a_new_one() -> None:
    pacer = SettlePacer(maximum=5.0)
    assert pacer.next(frozenset()) is None, "nothing coming up: the round's own pause"
    stuck = frozenset({"unschedulable"})
    pauses = [pacer.next(stuck) for _ in range(8)]
    assert pauses[0] is not None and pauses[0] <= SETTLE_SECONDS, "soon after a task starts coming up"
    assert all(p is not None and p >= 2.5 for p in pauses[-3:]), f"a stuck task costs an idle round's pace: {pauses}"
    fresh = pacer.next(stuck | {"new-service-task"})
    assert fresh is not None and fresh <= SETTLE_SECONDS, "a stuck task does not slow the next one"
    assert pacer.next(stuck) is not None, "the stuck one is still waited for"
    assert pacer.next(frozenset()) is None


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
