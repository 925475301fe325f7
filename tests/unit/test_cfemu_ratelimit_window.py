"""The emulator's per-token limit on its own, with a clock the test moves: how an overrun is blocked."""

from __future__ import annotations

from flareport_cfemu.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_overrunning_the_budget_blocks_the_token_for_a_whole_window_from_then() -> None:
    # "If you exceed this limit, all API calls for the next five minutes will be blocked": not only for the rest of
    # the window that was overrun.
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.hit("t", limit=2, window_seconds=60) is None
    clock.now += 50
    assert limiter.hit("t", limit=2, window_seconds=60) is None
    assert limiter.remaining("t", limit=2, window_seconds=60) == (0, 10)
    assert limiter.hit("t", limit=2, window_seconds=60) == 60, "a whole window from the overrun"
    assert limiter.remaining("t", limit=2, window_seconds=60) == (0, 60), "the headers report the block"
    clock.now += 30  # the overrun window has ended; the block has not
    assert limiter.hit("t", limit=2, window_seconds=60) == 30, "a refused request does not extend the block"
    clock.now += 30
    assert limiter.hit("t", limit=2, window_seconds=60) is None, "after the block, a new window"
    assert limiter.remaining("t", limit=2, window_seconds=60) == (1, 60)


def test_a_token_within_its_budget_is_never_blocked_and_others_are_not_affected() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(3):
        assert limiter.hit("a", limit=3, window_seconds=10) is None
    assert limiter.hit("a", limit=3, window_seconds=10) == 10
    assert limiter.hit("b", limit=3, window_seconds=10) is None, "each token has its own budget"
    clock.now += 10
    assert limiter.remaining("a", limit=3, window_seconds=10) == (3, 10), "a block past its end is forgotten"
