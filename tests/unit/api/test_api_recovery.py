"""The data-epoch marker decides whether a key may be restored from its proof (flareport_api.recovery)."""

from __future__ import annotations

from flareport_api.recovery import OPEN, SEALED, Epoch, marker_for_missing, may_restore


def test_a_redis_without_marker_and_without_keys_lost_its_data() -> None:
    assert marker_for_missing(0, 100.0) == Epoch(OPEN, 100.0)


def test_a_redis_with_keys_but_no_marker_was_written_by_an_older_release() -> None:
    assert marker_for_missing(3, 100.0) == Epoch(SEALED, 100.0)


def test_restores_only_while_open_and_within_the_window() -> None:
    assert may_restore(Epoch(OPEN, 100.0), now=100.0 + 3599, window_s=3600)
    assert not may_restore(Epoch(OPEN, 100.0), now=100.0 + 3600, window_s=3600)
    assert not may_restore(Epoch(SEALED, 100.0), now=100.0, window_s=3600)


def test_the_marker_round_trips_and_anything_unreadable_is_sealed() -> None:
    assert Epoch.decode(Epoch(OPEN, 12.5).encode()) == Epoch(OPEN, 12.5)
    assert Epoch.decode("garbage") == Epoch(SEALED, 0.0)
    assert Epoch.decode("open:not-a-time") == Epoch(OPEN, 0.0)
    assert Epoch.decode(None) is None
