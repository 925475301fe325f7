"""The accept script's answers read as values (the script itself runs against Redis in the integration tests)."""

from __future__ import annotations

from flareport_api.ingest import BACKLOG_RETRY_S, Accepted, Refused, interpret


def test_an_accepted_batch_lists_its_count_last_seq_and_duplicates() -> None:
    assert interpret([b"ok", 3, b"12", [b"7", b"8"]], rate=200, backlog_limit=10_000) == Accepted(3, 12, (7, 8))
    assert interpret([b"ok", 0, b"-1", []], rate=200, backlog_limit=10_000) == Accepted(0, -1, ())


def test_over_the_rate_names_the_limit_and_waits_until_the_bucket_holds_enough() -> None:
    refused = interpret([b"rate", 1500], rate=0.5, backlog_limit=10_000)
    assert isinstance(refused, Refused) and refused.limit == "events_per_second"
    assert refused.retry_after == 1.5 and "0.5 events per second" in refused.message
    assert interpret([b"rate", 0], rate=200, backlog_limit=1).retry_after == 0.001  # type: ignore[union-attr]


def test_a_full_backlog_names_the_limit_and_how_deep_it_is() -> None:
    refused = interpret([b"backlog", 12_345], rate=200, backlog_limit=10_000)
    assert refused == Refused(
        "events_backlog",
        "12345 events are waiting for the reconciler (limit 10000); send them again later",
        BACKLOG_RETRY_S,
    )
