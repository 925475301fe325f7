"""Cloudflare's ``Ratelimit`` header, read: the format Cloudflare documents, several limits, and what is not it."""

from __future__ import annotations

import pytest

from flareport_dns_worker.ratelimit_header import Standing, parse_ratelimit


def test_cloudflare_s_documented_example_is_read() -> None:
    assert parse_ratelimit('"default";r=50;t=30') == Standing(remaining=50, reset_seconds=30)


def test_of_several_limits_the_one_with_fewest_left_decides() -> None:
    header = '"default";r=900;t=200, "burst";r=3;t=1, "other";r=3;t=40'
    assert parse_ratelimit(header) == Standing(3, 40), "fewest left; of those, the later reset"


def test_spacing_and_parameter_order_do_not_matter() -> None:
    assert parse_ratelimit(' "default" ; t=12 ; r=0 ') == Standing(0, 12)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        '"default"',  # no counts
        '"default";r=5',  # no reset
        '"default";r=-1;t=5',  # not a count
        '"default";r=five;t=5',
        ";r=5;t=5",  # no name
        '"default";r=5;t=5' + ", x" * 500,  # far longer than any header Cloudflare sends
    ],
)
def test_a_header_that_cannot_be_read_is_ignored(header: str | None) -> None:
    assert parse_ratelimit(header) is None


def test_unreadable_items_are_skipped_when_another_is_readable() -> None:
    assert parse_ratelimit('"broken";r=x, "default";r=7;t=9') == Standing(7, 9)


def test_the_quota_comes_from_the_policy_item_of_the_same_name() -> None:
    header, policy = '"default";r=40;t=100, "burst";r=9;t=3', '"default";q=1200;w=300, "burst";q=10;w=5'
    assert parse_ratelimit(header, policy) == Standing(9, 3, quota=10)
    assert parse_ratelimit('"default";r=40;t=100', '"other";q=50;w=60') == Standing(40, 100), "no quota of its own"
    assert parse_ratelimit('"default";r=40;t=100', "garbage") == Standing(40, 100)
