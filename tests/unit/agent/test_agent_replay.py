"""Recognising a Docker event stream that repeats what it delivered (Podman truncating its events file)."""

from __future__ import annotations

from typing import Any

from flareport_agent.replay import ReplayGuard, rfc3339_ns

SECOND = 1_000_000_000
T0 = 1_780_000_000 * SECOND


def ev(action: str, cid: str, at: int) -> dict[str, Any]:
    return {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": {}}, "timeNano": at}


def test_events_in_time_order_are_fresh_even_when_several_share_a_timestamp() -> None:
    guard = ReplayGuard()
    stream = [ev("create", "a", T0), ev("create", "b", T0), ev("start", "a", T0 + 5), ev("start", "b", T0 + 5)]
    assert [guard.fresh(e) for e in stream] == [True, True, True, True]


def test_a_repeated_event_is_recognised_however_recent() -> None:
    guard = ReplayGuard()
    for e in (ev("create", "a", T0), ev("start", "a", T0 + 1), ev("rename", "a", T0 + 2)):
        assert guard.fresh(e)
    assert not guard.fresh(ev("create", "a", T0)), "the same create, delivered a second time"
    assert guard.fresh(ev("kill", "a", T0 + 3))


def test_events_far_older_than_the_newest_are_repeats_but_small_reordering_is_not() -> None:
    guard = ReplayGuard()
    assert guard.fresh(ev("start", "a", T0 + 60 * SECOND))
    assert guard.fresh(ev("die", "b", T0 + 59 * SECOND)), "a second of reordering between writers is normal"
    assert not guard.fresh(ev("start", "c", T0)), "a minute-old start is a repeat of the truncated file"


def test_the_window_forgets_old_events_and_events_without_timestamps_are_always_fresh() -> None:
    guard = ReplayGuard()
    for i in range(10_000):
        assert guard.fresh(ev("start", f"c{i}", T0 + i * SECOND // 10))
    assert len(guard._window) <= 21, "only the last two seconds of events are remembered"
    untimed = {"Type": "container", "Action": "start", "Actor": {"ID": "x"}}
    assert guard.fresh(untimed) and guard.fresh(untimed)


def test_events_older_than_the_subscription_are_repeats() -> None:
    guard = ReplayGuard(floor_ns=T0)
    assert not guard.fresh(ev("start", "a", T0 - 1)), "this happened before the agent subscribed"
    assert guard.fresh(ev("start", "b", T0))


def test_engine_system_time_is_read_to_the_nanosecond() -> None:
    assert rfc3339_ns("2026-11-28T02:53:34.566571528Z") == 1_795_834_414_566_571_528
    assert rfc3339_ns("2026-11-28T03:53:34.5+01:00") == 1_795_834_414_500_000_000
    assert rfc3339_ns("2026-11-28T02:53:34Z") == 1_795_834_414_000_000_000
    assert rfc3339_ns("yesterday") is None and rfc3339_ns(None) is None
