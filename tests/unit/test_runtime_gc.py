"""A started service settles its garbage collector (``flareport_common.runtime.settle_gc``): what the start
created leaves the collector's generations, and collections run less often. Checked in a fresh interpreter, so
this test process's collector is left as it is."""

from __future__ import annotations

import json
import subprocess
import sys

from flareport_common.runtime import GC_THRESHOLDS

PROBE = """
import gc, json
from flareport_common.runtime import settle_gc
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
settle_gc()
print(json.dumps({"before": before, "after": {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}}))
"""


def test_settling_freezes_what_the_start_made_and_raises_the_collection_thresholds() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["before"]["frozen"] == 0 and tuple(seen["before"]["threshold"]) != GC_THRESHOLDS
    assert tuple(seen["after"]["threshold"]) == GC_THRESHOLDS
    # The imports alone are tens of thousands of objects; a full collection no longer walks them.
    assert seen["after"]["frozen"] > 10_000
    assert GC_THRESHOLDS[0] > 700, "gen0 collections less often than CPython's default"
