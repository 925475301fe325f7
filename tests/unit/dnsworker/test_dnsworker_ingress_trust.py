"""When a tunnel's cached configuration stands in for a GET (``ingress_trust.trusted_version``): pure, no I/O."""

from __future__ import annotations

import pytest

from flareport_dns_worker.ingress_trust import READ_AT, VERSION, config_version, trusted_version

NOW = 1_800_000_000.0


def observed(read_at: object, version: object = b"7") -> dict[bytes, object]:
    return {READ_AT.encode(): read_at, VERSION.encode(): version}


def test_a_copy_read_within_the_window_is_trusted_with_its_version() -> None:
    assert trusted_version(observed(str(int((NOW - 1.5) * 1000)).encode()), now=NOW, window_seconds=2) == 7
    assert trusted_version(observed(str(int(NOW * 1000)).encode()), now=NOW, window_seconds=2) == 7


@pytest.mark.parametrize(
    ("hash_", "window", "why"),
    [
        (observed(str(int((NOW - 2) * 1000)).encode()), 2.0, "the window has just ended"),
        (observed(str(int((NOW - 60) * 1000)).encode()), 2.0, "read long ago"),
        (observed(str(int((NOW + 1) * 1000)).encode()), 2.0, "read time in the future: its age is unknown"),
        (observed(b"soon"), 2.0, "read time unparseable"),
        (observed(str(int(NOW * 1000)).encode(), b"v7"), 2.0, "version unparseable"),
        ({READ_AT.encode(): str(int(NOW * 1000)).encode()}, 2.0, "no version: no tripwire"),
        ({VERSION.encode(): b"7"}, 2.0, "never read (a copy from our create or PUT only)"),
        (observed(str(int(NOW * 1000)).encode()), 0.0, "a window of 0 turns it off"),
    ],
)
def test_a_copy_is_not_trusted(hash_: dict[bytes, object], window: float, why: str) -> None:
    assert trusted_version(hash_, now=NOW, window_seconds=window) is None, why


def test_only_an_integer_is_a_version() -> None:
    assert config_version(3) == 3
    assert [config_version(raw) for raw in (None, "3", 3.0, True)] == [None, None, None, None]
