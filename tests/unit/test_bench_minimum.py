"""The bench's rate-limit-bound minimum: the earliest a run's calls can all go under Cloudflare's two limits."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench package, as bench/run_all.py loads it

from bench.harness.scale import cloudflare_minimum


def test_the_window_alone_needs_whole_windows() -> None:
    assert cloudflare_minimum(2_100, 1_200, 10, 0) == 10.0, "the calls past one window's budget wait one window"
    assert cloudflare_minimum(1_200, 1_200, 10, 0) == 0.0, "a budget's worth goes at once"
    assert cloudflare_minimum(0, 1_200, 10, 200) == 0.0


def test_the_per_second_limit_spreads_each_window_s_calls() -> None:
    # 200 a second: the first window's 1,200 calls take 5 s more, then the last 900 go from 10 s, 200 a second.
    assert cloudflare_minimum(2_100, 1_200, 10, 200) == 14.0
    assert cloudflare_minimum(2_100, 1_200, 300, 200) == 304.0, "Cloudflare's own window: 4 s more than its 300"
    assert cloudflare_minimum(401, 1_200, 10, 200) == 2.0, "the 401st call goes two seconds after the first"
