"""The local stack's process supervisor: output relayed and searchable, however long a child talks."""

from __future__ import annotations

import sys

import pytest

from flareport_cli.supervisor import Supervisor

# A full window of output, a pause (so the waiter has read that window), then more than a window, then the line.
TALKER = """
import time
for i in range(100):
    print(f"noise {i}", flush=True)
time.sleep(1)
for i in range(100):
    print(f"more noise {i}", flush=True)
print("ready", flush=True)
time.sleep(30)
"""


def test_wait_for_line_finds_a_line_after_the_kept_window_moved_on() -> None:
    supervisor = Supervisor(echo=False, keep_lines=50)
    child = supervisor.start("talker", [sys.executable, "-c", TALKER])
    try:
        assert supervisor.wait_for_line(child, lambda line: line == "ready", timeout=30) == "ready"
        assert len(child.lines) <= 50, "only the newest lines are kept"
    finally:
        supervisor.stop_all()


def test_a_child_that_exits_is_reported_with_its_output() -> None:
    supervisor = Supervisor(echo=False)
    child = supervisor.start("failing", [sys.executable, "-c", "print('bad config: X'); raise SystemExit(2)"])
    try:
        with pytest.raises(RuntimeError, match=r"exited with status 2: bad config: X"):
            supervisor.wait_for_line(child, lambda line: line == "never", timeout=30)
    finally:
        supervisor.stop_all()
