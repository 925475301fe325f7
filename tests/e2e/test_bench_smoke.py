"""``make bench-smoke``: the benchmark harness runs end to end at small sizes and produces numbers.

It runs ``bench/run_all.py --smoke`` as a user would (a subprocess starting its own redis-server, emulator and
services) and checks the JSON it wrote: every section is there, without an error, with numbers in it. It asserts
nothing about speed: the numbers of a loaded CI machine say nothing, the full ``make bench`` run is the report.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def _number(data: Any, *path: str | int) -> float:
    for step in path:
        data = data[step]
    assert isinstance(data, int | float) and not isinstance(data, bool), f"{'/'.join(map(str, path))}: {data!r}"
    return float(data)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", "--output", str(out / "smoke.json"),
               "--markdown", str(out / "benchmarks.md"), "--img-dir", str(out / "img")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, f"run_all.py --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    report = (out / "benchmarks.md").read_text()
    assert report.startswith("# Benchmarks")
    assert "The same fleet with a 4 s window" in report, "the scale section reports the longer window's run"
    assert "The call that paced the last one" in report, "the scale section says what the first calls cost"
    assert "Then one more container started on 3 agents" in report, "the scale section says what one start costs"
    loaded: dict[str, Any] = json.loads((out / "smoke.json").read_text())
    plots = sorted(p.name for p in (out / "img").glob("bench-*.png"))
    if importlib.util.find_spec("matplotlib") is None:  # a dev dependency: without it the run says so, and no plots
        assert "matplotlib" in loaded["meta"]["plots"]
    else:
        assert plots == ["bench-calls-vs-minimum.png", "bench-latency-cdf.png", "bench-throughput-replicas.png"]
    return loaded


def test_every_section_ran_without_an_error(results: dict[str, Any]) -> None:
    sections = ("convergence", "cloudflare_calls", "scale", "scale_long", "memory", "api", "reconciler", "cpu",
                "targets", "meta")  # fmt: skip
    for section in sections:
        assert section in results, section
        value = results[section]
        errors = [v.get("error") for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]
        assert not any(errors), f"{section}: {errors}"


def test_convergence_latencies_and_calls_are_numbers(results: dict[str, Any]) -> None:
    conv = results["convergence"]
    for latency in (0, 100):
        assert _number(conv, f"single_{latency}ms", "median_ms") > 0
        assert _number(conv, f"burst20_{latency}ms", "calls") > 0
    steady = conv["steady"]
    assert steady["converged"] == steady["events"] > 0
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert _number(steady, key) > 0


def test_a_single_starts_time_is_broken_down_by_hop(results: dict[str, Any]) -> None:
    for latency in (0, 100):
        hops = results["convergence"][f"single_{latency}ms"]["hops_median_ms"]
        for hop in ("agent_to_api", "api_to_reconciler", "reconciler_to_commit", "commit_to_worker",
                    "worker_to_first_call", "first_call_to_converged", "control_plane", "end_to_end"):  # fmt: skip
            assert _number(hops, hop) >= 0, f"{hop} at {latency} ms per call"


def test_restart_unchanged_writes_nothing_after_a_counted_first_publish(results: dict[str, Any]) -> None:
    restart = results["convergence"]["restart_50_unchanged"]
    first = restart["first_publish"]
    # The same emulator counters measure both runs: the first publish of the 50 containers must show up in them
    # (at least one write, at most a DNS batch and an ingress PUT per rule), else a zero below proves nothing.
    assert first["converged"] is True and first["rules"] == restart["containers"] == 50
    assert 1 <= _number(first, "writes") <= 2 * 50, f"first publish of 50 rules: {first['writes']} writes"
    assert _number(first, "calls") >= _number(first, "writes")
    # An unchanged inventory plans to the versions already applied (docs/benchmarks.md, "restart50").
    assert _number(restart, "writes") == 0, f"restart with nothing changed wrote {restart['writes']} times"


def test_calls_per_rule_are_counted_against_the_minimum(results: dict[str, Any]) -> None:
    bursts = results["cloudflare_calls"]["bursts"]
    assert {b["access"] for b in bursts} == {True, False}
    for burst in bursts:
        assert _number(burst, "calls") >= _number(burst, "writes") >= 1
        assert _number(burst, "minimum") >= 1


def test_fleet_converged_with_its_timeline_and_memory_was_read(results: dict[str, Any]) -> None:
    scale = results["scale"]
    assert scale["converged"] is True
    assert _number(scale, "seconds") > 0 and _number(scale, "calls") > 0
    timeline = scale["timeline"]
    assert _number(timeline, "registrations_done") <= _number(timeline, "enrolments_done")
    for step in ("tunnel_creates", "configuration_puts", "dns_batches"):
        assert _number(timeline, step, 0) <= _number(timeline, step, 1), f"{step}: the first call, then the last"
    for service in ("api", "reconciler-1", "dns-worker", "cloudflare", "redis-server"):
        assert _number(results["memory"], service) > 0
    # More calls than one window's budget: the last waited for the call that paced it, and what the fleet had
    # spent by then is known.
    pacing = scale["pacing"]
    assert pacing["call"] >= _number(scale, "calls") - 29  # the limit counts the calls before the run too
    assert 0 < _number(pacing, "at_s") <= _number(scale, "seconds")
    assert _number(pacing, "total_cpu_s") > 0 and _number(pacing, "cpu_s", "api") > 0
    # What the dns-worker's limits alone allow (the window's span, and the per-second cap below Cloudflare's 200 a
    # second per address): never later than what the run took, never sooner than one span.
    assert _number(scale, "rate_limit_per_second") == 200
    assert _number(scale, "rate_window_s") < _number(scale, "limits_floor_s") <= _number(scale, "limiter_floor_s")
    # The minimum keeps to both of Cloudflare's limits: never sooner than the window's alone would allow.
    assert _number(scale, "minimum_seconds") >= _number(scale, "window_minimum_seconds") > 0
    assert "scale_real" not in results, "Cloudflare's own window (five minutes) is for the full run only"
    # One more start on each of three agents of the converged fleet: published (both writes), with its calls and
    # what it cost the services; measured on the scale row's stack only.
    one = scale["one_start"]
    assert one["zone_hostnames"] == scale["hostnames"] and len(one["starts"]) == 3
    for start in one["starts"]:
        assert _number(start, "ms") > 0 and _number(start, "calls") >= 2  # its DNS batch and configuration PUT
        assert _number(start, "cpu_s", "reconciler-1") > 0 and _number(start, "cpu_s", "dns-worker") > 0
        assert "bench" not in start["cpu_s"]  # the fleet's own process is not the stack's cost
    longer = results["scale_long"]
    assert "one_start" not in longer
    assert (longer["converged"], longer["rate_window_s"], longer["agents"]) == (True, 4, scale["agents"])
    assert _number(longer, "seconds") > 0 and _number(longer, "calls") >= _number(longer, "minimum_calls")


def test_api_and_reconciler_throughput_are_numbers(results: dict[str, Any]) -> None:
    assert _number(results["api"], "ingest", "events_per_s") > 0
    assert _number(results["api"], "long_poll", "p99_ms") > 0
    assert [run["replicas"] for run in results["reconciler"]] == [1, 2]
    for run in results["reconciler"]:
        assert _number(run, "snapshots", "events_per_s") > 0


def test_cpu_seconds_are_numbers_for_every_measured_process_and_window(results: dict[str, Any]) -> None:
    cpu = results["cpu"]
    for window in ("single", "burst", "restart"):
        for process in [*cpu["processes"], "total"]:
            assert _number(cpu, window, "cpu_s", process) >= 0, f"{window}: {process}"
    assert _number(cpu, "restart", "cpu_s", "total") > 0, "a restart imports and starts three processes"
    assert _number(cpu, "idle", "per_30s", "total") >= 0


def test_every_target_has_a_verdict_or_says_it_was_not_measured(results: dict[str, Any]) -> None:
    targets = results["targets"]
    assert len(targets) >= 10
    assert all(t["met"] in (True, False, None) and t["target"] for t in targets)


def test_compose_up_through_the_real_agent_has_calls_and_times_for_every_cell(results: dict[str, Any]) -> None:
    compose = results["compose_up"]
    if compose.get("skipped"):  # no Podman on this machine: the section says so instead of giving numbers
        pytest.skip(compose["error"])
    assert not compose.get("error"), compose.get("error")
    cells = compose["cells"]
    assert [(c["containers"], c["latency_ms"], c["created_first"]) for c in cells] == [
        (3, 0, False), (3, 100, False), (3, 0, True), (3, 100, True)
    ]  # fmt: skip
    for cell in cells:
        where = f"{cell['containers']} containers at {cell['latency_ms']} ms per call"
        where += " (all created first)" if cell["created_first"] else ""
        assert cell["converged"] is True, f"{where}: {cell.get('error')}"
        # At least one DNS batch and one configuration PUT published the cell's hostnames, counted in its calls.
        assert _number(cell, "calls") >= _number(cell, "writes") >= 2, where
        # The starts come one after another, and convergence is after the last one.
        assert 0 < _number(cell, "engine_s") < _number(cell, "after_first_start_s"), where
        assert _number(cell, "after_last_start_s") > 0, where
    assert any(t["key"] == "compose20_after_last" for t in results["targets"])


def test_single_starts_and_a_burst_with_the_engine_are_timed_from_its_events(results: dict[str, Any]) -> None:
    compose = results["compose_up"]
    if compose.get("skipped"):
        pytest.skip(compose["error"])
    singles, burst = compose["singles"], compose["burst"]
    assert not singles.get("error") and not burst.get("error"), (singles, burst)
    assert len(singles["runs"]) == 2, singles
    for run in singles["runs"]:
        assert _number(run, "event_to_written_ms") > 0 and _number(run, "start_to_written_ms") > 0, singles
    assert _number(burst, "containers") == 3 and _number(burst, "last_event_to_written_ms") > 0, burst
    assert _number(burst, "calls") >= _number(burst, "writes") >= 2, burst
    verdicts = {t["key"]: t["met"] for t in results["targets"]}
    assert verdicts.get("single_0ms_engine") is not None and verdicts.get("burst20_engine") is not None
