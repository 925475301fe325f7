"""Docker events -> agent events, without an engine (the shapes are those Docker and Podman send)."""

from __future__ import annotations

from typing import Any

from flareport_agent.tracker import STARTING_SECONDS, Tracker
from flareport_common.messages.events import ContainerDie, ContainerStart, ContainerStop

LABELS = {"dockflare.enable": "true", "dockflare.hostname": "a.example.com", "dockflare.service": "http://a:80"}


def ev(action: str, cid: str = "c1", **attrs: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "Actor": {"ID": cid, "Attributes": {"name": "web", "image": "img:1", **LABELS, **attrs}},
    }


def test_start_rename_health_and_die_of_a_labelled_container() -> None:
    tracker = Tracker()
    started = tracker.event(ev("start"))
    assert isinstance(started, ContainerStart)
    assert started.container.rules[0].hostname == "a.example.com"
    renamed = tracker.event(ev("rename", name="web2"))
    assert isinstance(renamed, ContainerStart) and renamed.container.name == "web2"
    health = tracker.event(ev("health_status: unhealthy", name="web2"))
    assert isinstance(health, ContainerStart) and health.container.health == "unhealthy"
    died = tracker.event(ev("die", name="web2", exitCode="3"))
    assert isinstance(died, ContainerDie) and died.exit_code == 3
    assert tracker.event(ev("stop")) is None, "Docker's stop after die must not be reported twice"
    assert tracker.known == {}


def test_kill_with_sigkill_is_a_stop_with_action_kill_but_sigterm_and_sighup_are_not() -> None:
    tracker = Tracker()
    tracker.event(ev("start"))
    assert tracker.event(ev("kill", signal="1")) is None, "a signal alone does not end the container"
    stopped = tracker.event(ev("die", exitCode="137"))
    assert isinstance(stopped, ContainerStop) and stopped.action == "kill"
    tracker.event(ev("start"))
    tracker.event(ev("kill", signal="15"))
    assert isinstance(tracker.event(ev("die", exitCode="0")), ContainerDie)


def test_pause_and_destroy_are_stops_and_unpause_is_a_start() -> None:
    tracker = Tracker()
    tracker.event(ev("start"))
    paused = tracker.event(ev("pause"))
    assert isinstance(paused, ContainerStop) and paused.action == "pause"
    assert isinstance(tracker.event(ev("unpause")), ContainerStart)
    removed = tracker.event(ev("remove"))
    assert isinstance(removed, ContainerStop) and removed.action == "destroy"


def test_unlabelled_and_own_cloudflared_containers_are_ignored() -> None:
    tracker = Tracker(ignore_label=("flareport.managed", "cloudflared"))
    plain = {"Type": "container", "Action": "start", "Actor": {"ID": "p", "Attributes": {"name": "x"}}}
    assert tracker.event(plain) is None
    assert tracker.event(ev("start", "cf", **{"flareport.managed": "cloudflared"})) is None
    assert tracker.event(ev("rename", "unknown")) is None, "renames of untracked containers say nothing"


def test_snapshot_replaces_what_is_tracked() -> None:
    tracker = Tracker()
    tracker.event(ev("start", "old"))
    inventory = tracker.snapshot(
        [
            {"Id": "new", "Names": ["/web"], "Image": "img", "State": "running", "Status": "Up (healthy)",
             "Labels": LABELS},
            {"Id": "plain", "Names": ["/x"], "Labels": {}},
        ]
    )  # fmt: skip
    assert [(c.container_id, c.name, c.health) for c in inventory.containers] == [("new", "web", "healthy")]
    assert set(tracker.known) == {"new"}
    assert tracker.event(ev("die", "old")) is None


def test_relabelled_container_without_enable_is_reported_gone() -> None:
    tracker = Tracker()
    tracker.event(ev("start"))
    gone = tracker.event({"Type": "container", "Action": "start", "Actor": {"ID": "c1", "Attributes": {"name": "web"}}})
    assert isinstance(gone, ContainerStop)


def test_a_kill_before_a_snapshot_that_still_lists_the_container_is_a_stop_at_the_die() -> None:
    tracker = Tracker()
    tracker.event(ev("start", "a"))
    tracker.event(ev("start", "b"))
    tracker.event(ev("kill", "a"))
    tracker.event(ev("kill", "b"))
    # The list is taken between the signal and the exit of "a"; "b" has already gone.
    tracker.snapshot([{"Id": "a", "Names": ["/web"], "Labels": LABELS}])
    stopped = tracker.event(ev("die", "a", exitCode="137"))
    assert isinstance(stopped, ContainerStop) and stopped.action == "kill"
    tracker.event(ev("start", "b"))
    assert isinstance(tracker.event(ev("die", "b", exitCode="1")), ContainerDie), "b's old kill was forgotten"


def test_containers_created_and_not_yet_started_are_counted_until_they_start_go_or_age() -> None:
    now = [1_000.0]
    tracker = Tracker(clock=lambda: now[0])
    # docker compose up: every container created first, then started one after another.
    for n in range(3):
        assert tracker.event(ev("create", cid=f"c{n}")) is None, "a create is not a change to publish"
    tracker.event({"Type": "container", "Action": "create", "Actor": {"ID": "plain", "Attributes": {"name": "db"}}})
    assert tracker.starting() == 3, "only containers whose labels ask to be published"
    tracker.event(ev("start", cid="c0"))
    tracker.event(ev("remove", cid="c1"))
    assert tracker.starting() == 1
    tracker.event(ev("start", cid="c2"))
    assert tracker.starting() == 0, "the run is complete"
    # One created and never started (docker create for later) stops counting after STARTING_SECONDS.
    tracker.event(ev("create", cid="later"))
    now[0] += STARTING_SECONDS - 1
    assert tracker.starting() == 1
    now[0] += 2
    assert tracker.starting() == 0
    # A snapshot after a reconnect: creates missed meanwhile are unknown, so none is said to be on its way.
    tracker.event(ev("create", cid="c9"))
    tracker.snapshot([])
    assert tracker.starting() == 0
