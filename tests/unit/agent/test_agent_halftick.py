"""Two subscriptions to Podman's events half a tick apart: each event passed on once, in order, and the second
subscription placed (and placed again) half a tick after the first one's polls."""

from __future__ import annotations

from typing import Any

import pytest

from flareport_agent.halftick import FIRST, HALF, KEEP_SECONDS, REALIGN_SECONDS, SECOND, TICK, Merge, start_at

T0 = 1_780_000_000_000_000_000


def ev(action: str, cid: str, at: int | None) -> dict[str, Any]:
    raw: dict[str, Any] = {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": {}}}
    if at is not None:
        raw["timeNano"] = at
    return raw


class Passed:
    def __init__(self) -> None:
        self.items: list[str] = []

    def put(self, name: str) -> Any:
        return lambda: self.items.append(name)


def test_each_event_is_passed_once_whichever_stream_delivers_it_first() -> None:
    merge, passed = Merge(), Passed()
    create, start = ev("create", "a", T0), ev("start", "a", T0 + 5)
    assert merge.admit(create, FIRST, 10.00, passed.put("create"))
    assert merge.admit(start, SECOND, 10.20, passed.put("start"))  # the second stream polled first this time
    assert not merge.admit(create, SECOND, 10.125, passed.put("create again"))
    assert not merge.admit(start, FIRST, 10.25, passed.put("start again"))
    assert passed.items == ["create", "start"]


def test_a_pair_of_copies_measures_how_far_apart_the_streams_poll() -> None:
    merge, passed = Merge(), Passed()
    merge.admit(ev("start", "a", T0), FIRST, 100.000, passed.put("a"))
    merge.admit(ev("start", "a", T0), SECOND, 100.120, passed.put("a"))
    assert merge.offset == pytest.approx(0.120)
    assert not merge.misaligned(100.120)
    # The second stream ahead by 40 ms is 210 ms behind, modulo a tick: too close to the first one's polls.
    merge.admit(ev("start", "b", T0 + 1), SECOND, 200.000, passed.put("b"))
    merge.admit(ev("start", "b", T0 + 1), FIRST, 200.040, passed.put("b"))
    assert merge.offset == pytest.approx(TICK - 0.040)
    assert merge.misaligned(200.040)
    merge.realigning(200.040)
    assert merge.offset is None and not merge.misaligned(200.040)


def test_the_second_stream_is_placed_again_at_most_once_a_minute() -> None:
    """Docker pushes each event to every subscriber at once (no tick): copies always come together, and placing
    the second subscription again after every event would only churn."""
    merge, passed = Merge(), Passed()
    for n, now in enumerate((10.0, 11.0, 10.0 + REALIGN_SECONDS)):
        merge.admit(ev("start", f"c{n}", T0 + n), FIRST, now, passed.put("c"))
        merge.admit(ev("start", f"c{n}", T0 + n), SECOND, now + 0.001, passed.put("c"))
        if n == 0:
            assert merge.misaligned(now)
            merge.realigning(now)
        elif n == 1:
            assert not merge.misaligned(now), "placed again a second ago"
        else:
            assert merge.misaligned(now)


def test_a_snapshot_lets_the_other_copy_of_an_earlier_event_through_after_it() -> None:
    merge, passed = Merge(), Passed()
    start = ev("start", "a", T0)
    merge.admit(start, SECOND, 1.0, passed.put("start from the second stream"))
    merge.snapshot(passed.put("snapshot"))
    # The snapshot's list may have been taken before that start: its copy on the first stream applies on top.
    assert merge.admit(start, FIRST, 1.1, passed.put("start from the first stream"))
    assert passed.items == ["start from the second stream", "snapshot", "start from the first stream"]


def test_an_event_without_a_time_passes_from_the_first_stream_only() -> None:
    merge, passed = Merge(), Passed()
    assert not merge.admit(ev("start", "a", None), SECOND, 1.0, passed.put("second"))
    assert merge.admit(ev("start", "a", None), FIRST, 1.1, passed.put("first"))
    assert passed.items == ["first"]


def test_copies_are_remembered_for_a_while_and_in_bounded_number() -> None:
    merge, passed = Merge(), Passed()
    merge.admit(ev("start", "a", T0), FIRST, 1.0, passed.put("a"))
    merge.admit(ev("start", "b", T0 + 1), FIRST, 1.0 + KEEP_SECONDS + 1, passed.put("b"))
    # Long after its first copy, a copy is no longer recognised: only a reconnect could bring one that late.
    assert merge.admit(ev("start", "a", T0), SECOND, 1.0 + KEEP_SECONDS + 1, passed.put("a late"))
    for n in range(20_000):
        merge.admit(ev("start", f"c{n}", T0 + 10 + n), FIRST, 100.0, passed.put("c"))
    assert len(merge._seen) <= 10_000


def test_the_first_streams_subscription_starts_a_new_placement() -> None:
    merge, passed = Merge(), Passed()
    merge.admit(ev("start", "a", T0), FIRST, 1.0, passed.put("a"))
    merge.admit(ev("start", "a", T0), SECOND, 1.01, passed.put("a"))
    assert merge.misaligned(1.01)
    before = merge.generation
    merge.subscribed(5.0)
    assert merge.generation == before + 1 and merge.anchor == 5.0 and not merge.misaligned(5.0)


@pytest.mark.parametrize(("now", "anchor", "lead"), [(10.0, 9.99, 0.002), (10.0, 3.3, 0.0), (10.0, 10.4, 0.01)])
def test_the_second_subscription_is_timed_to_answer_half_a_tick_after_the_first_ones_polls(
    now: float, anchor: float, lead: float
) -> None:
    at = start_at(now, anchor, lead)
    assert now <= at < now + TICK
    assert (at + lead - anchor) % TICK == pytest.approx(HALF)
