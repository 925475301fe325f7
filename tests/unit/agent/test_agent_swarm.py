"""Swarm services as the agent reports them (swarm.py, pure): labels, running tasks, updates, scaling, removal."""

from __future__ import annotations

from typing import Any

from flareport_agent.swarm import SWARM_SERVICE_LABEL, changes, published
from flareport_agent.tracker import Tracker
from flareport_common.messages.events import ContainerStart, ContainerStop

ENABLED = {"flareport.enable": "true", "flareport.hostname": "app.example.com", "flareport.service": "http://app:80"}


def service(sid: str, labels: dict[str, str], container_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "ID": sid,
        "Spec": {
            "Name": f"stack_{sid}",
            "Labels": labels,
            "TaskTemplate": {"ContainerSpec": {"Image": "web:1@sha256:abc", "Labels": container_labels or {}}},
        },
    }


def task(sid: str, state: str, desired: str = "running") -> dict[str, Any]:
    return {"ServiceID": sid, "Status": {"State": state}, "DesiredState": desired}


def test_a_service_is_published_with_its_labels_over_its_containers_once_a_task_runs() -> None:
    svc = service(
        "s1",
        {"flareport.enable": "true", "flareport.hostname": "svc.example.com"},
        {"flareport.hostname": "ignored.example.com", "flareport.service": "http://web:8080"},
    )
    assert published([svc], [task("s1", "starting")]) == {}, "no running task yet: nothing to publish"
    info = published([svc], [task("s1", "running")])["s1"]
    assert (info.name, info.image) == ("stack_s1", "web:1")
    assert [(r.hostname, r.service) for r in info.rules] == [("svc.example.com", "http://web:8080")]


def test_an_update_keeps_a_published_service_while_its_new_task_comes_up_but_scaling_to_zero_does_not() -> None:
    svc = service("s1", ENABLED)
    updating = [task("s1", "shutdown", desired="shutdown"), task("s1", "preparing", desired="ready")]
    assert "s1" in published([svc], updating, already={"s1"}), "a rolling update does not flap the hostname"
    assert published([svc], updating) == {}, "a service never published waits for a running task"
    scaled_to_zero = [task("s1", "shutdown", desired="shutdown")]
    assert published([svc], scaled_to_zero, already={"s1"}) == {}
    failed = [task("s1", "failed", desired="shutdown"), task("s1", "rejected", desired="running")]
    assert published([svc], failed, already={"s1"}) == {}, "failing tasks do not keep it published"


def test_disabled_services_and_the_agents_own_cloudflared_are_not_published() -> None:
    own = service("cf", {"flareport.managed": "cloudflared", **ENABLED})
    off = service("off", {**ENABLED, "flareport.enable": "false"})
    tasks = [task("cf", "running"), task("off", "running")]
    assert published([own, off], tasks, ignore_label=("flareport.managed", "cloudflared")) == {}


def stops(event: object) -> tuple[str, str, str] | None:
    return (event.container_id, event.name, event.action) if isinstance(event, ContainerStop) else None


def test_changes_report_new_and_changed_services_as_starts_and_the_others_as_stop_or_destroy() -> None:
    a = published([service("a", ENABLED)], [task("a", "running")])["a"]
    b = published([service("b", ENABLED)], [task("b", "running")])["b"]
    moved = published([service("a", {**ENABLED, "flareport.hostname": "moved.example.com"})], [task("a", "running")])
    events = changes({"a": a, "b": b}, moved, present={"a"})
    assert isinstance(events[0], ContainerStart) and events[0].container.rules[0].hostname == "moved.example.com"
    assert [stops(e) for e in events[1:]] == [("b", "stack_b", "destroy")], "a removed service is destroyed"
    scaled = changes({"a": a}, {}, present={"a"})
    assert [stops(e) for e in scaled] == [("a", "stack_a", "stop")], "one without running task is stopped"
    assert changes({"a": a}, {"a": a}, present={"a"}) == [], "nothing changed, nothing to report"


def test_the_tracker_leaves_swarm_task_containers_to_their_service_and_snapshots_cover_services() -> None:
    tracker = Tracker()
    tracker.services = published([service("s1", ENABLED)], [task("s1", "running")])
    raw = {"Action": "start", "Actor": {"ID": "c1", "Attributes": {**ENABLED, SWARM_SERVICE_LABEL: "s1"}}}
    assert tracker.event(raw) is None, "the task container is not reported next to its service"
    snapshot = tracker.snapshot(
        [{"Id": "c1", "Names": ["/stack_s1.1.x"], "Labels": {**ENABLED, SWARM_SERVICE_LABEL: "s1"}}]
    )
    assert [c.container_id for c in snapshot.containers] == ["s1"]


def test_answers_of_an_unexpected_shape_publish_nothing_and_break_nothing() -> None:
    odd_services: list[Any] = [
        {"ID": "s2", "Spec": {"Labels": ["not", "a", "map"], "TaskTemplate": None}},
        {"Spec": {"Labels": ENABLED}},
        "not a service",
    ]
    odd_tasks: list[Any] = [{"ServiceID": "s2", "Status": None}, ["not", "a", "task"], None]
    assert published(odd_services, odd_tasks, already={"s2"}) == {}
