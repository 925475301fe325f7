"""The benchmark suite of issue 9: every measurement against real processes on loopback, one report.

Runs, each section with its own processes and redis-server, bounded in count and time:
1. convergence latency and whole-stack Cloudflare calls (harness.convergence);
2. Cloudflare calls per rule at the dns-worker for bursts up to 20,000 rules, with and without Access
   (harness.calls, reusing bench/cloudflare_calls.py);
3. + 6. a fleet of simulated agents from cold start to converged under the rate limit, and every service's RSS
   (harness.scale);
4. + 5. command delivery and API ingest (bench/api_ingest.py), reconciler throughput with 1 and 2 replicas
   (bench/reconciler.py), the engine's part of a container start with Podman (bench/agent_events.py);
7. CPU seconds per process: idle, per container start, a burst of 20, a restart with 50 containers (harness.cpu);
8. ``docker compose up`` of 20 and 100 containers through a real agent on Podman, at 0 and 100 ms per Cloudflare
   call: calls, and the time to all converged (harness.composeup).
Writes the results as JSON (``--output``), the markdown report (``--markdown``) and its plots (``--img-dir``).
A section that fails is recorded with its error and the run goes on; the exit status is 1 then.

Usage: python bench/run_all.py            (full: about 10-15 minutes on 2 cores)
       python bench/run_all.py --smoke    (small sizes, under 2 minutes: proves the harness works, not speed)
       python bench/run_all.py --only compose_up   (one section at full size, e.g. after changing what it measures)
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # bench.harness and bench.cloudflare_calls

from bench.harness import calls, composeup, convergence, cpu, external, report, scale  # noqa: E402
from bench.harness.stack import BenchStack  # noqa: E402

from flareport_cli.localredis import LocalRedis  # noqa: E402
from flareport_common import runtime  # noqa: E402
from flareport_common.logs import setup_logging  # noqa: E402

FULL: dict[str, Any] = {
    "singles": 15, "rate": 50.0, "seconds": 20.0, "big_burst": 1000,
    "call_sizes": [1, 100, 1000, 20000], "access_sizes": [1, 100, 1000],
    "agents": 1000, "per_agent": 20, "rate_limit": 1200, "rate_window": 10, "scale_timeout": 300.0,
    "scale_long_window": 60, "scale_real_window": 300,
    "api_agents": 1000, "commands": 500, "ingest_seconds": 5.0,
    "rec_agents": 200, "rec_per_agent": 100, "rec_updates": 2000, "engine_containers": 20, "flood_seconds": 20.0,
    "cpu_idle_seconds": 30.0, "cpu_singles": 5, "cpu_burst": 20, "cpu_running": 50, "cpu_real_agent": True,
    "compose_counts": [20, 100], "compose_latencies": [0, 100], "compose_singles": 30, "compose_burst": 20,
    "compose_bursts": 5,
}  # fmt: skip
SMOKE: dict[str, Any] = {
    "singles": 1, "rate": 20.0, "seconds": 1.0, "big_burst": 50,
    "call_sizes": [1, 100], "access_sizes": [1],
    # 41 calls against a budget of 29 per window: the smoke fleet waits for a second window, as the full one does.
    "agents": 20, "per_agent": 5, "rate_limit": 30, "rate_window": 2, "scale_timeout": 60.0,
    "scale_long_window": 4, "scale_real_window": 0,
    "api_agents": 20, "commands": 20, "ingest_seconds": 1.0,
    "rec_agents": 10, "rec_per_agent": 10, "rec_updates": 50, "engine_containers": 0, "flood_seconds": 2.0,
    "cpu_idle_seconds": 2.0, "cpu_singles": 1, "cpu_burst": 3, "cpu_running": 5, "cpu_real_agent": False,
    "compose_counts": [3], "compose_latencies": [0, 100], "compose_singles": 2, "compose_burst": 3,
    "compose_bursts": 1,
}  # fmt: skip
SECTIONS = ("convergence", "cloudflare_calls", "scale", "scale_long", "scale_real", "api", "reconciler",
            "event_flood", "cpu", "agent_engine", "compose_up")  # fmt: skip


def section(results: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    started = time.monotonic()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    try:
        results[name] = work()
    except Exception as exc:  # one broken section must not lose the others' numbers
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def run(size: dict[str, Any], workdir: Path, only: frozenset[str] = frozenset(SECTIONS)) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def whole_stack() -> Any:
        with BenchStack(workdir / "convergence") as stack:
            return asyncio.run(convergence.run(stack, singles=size["singles"], rate=size["rate"],
                                               seconds=size["seconds"], big_burst=size["big_burst"]))  # fmt: skip

    def dns_worker_calls() -> Any:
        server = LocalRedis(workdir / "calls-redis")
        server.start()
        try:
            return calls.main_sync(server.url, size["call_sizes"], size["access_sizes"])
        finally:
            server.stop()

    def fleet(window: float, name: str = "scale") -> Any:
        limits = {"rate_limit": size["rate_limit"], "rate_window": window}
        # Two windows at least (a fleet needs two), and the time the fleet takes to come up.
        within = max(size["scale_timeout"], 2 * window + 120)
        with BenchStack(workdir / name, **limits) as stack:
            # The simulated fleet stands in for a thousand hosts whose CPU is not this machine's: it runs on the
            # services' own loop (uvloop), which leaves the stack under measurement more of the cores it shares.
            # One start on the converged fleet is measured once, on the scale row's stack (the longer window
            # would only make it wait a longer span first).
            return runtime.run(scale.run(stack, agents=size["agents"], per_agent=size["per_agent"],
                                         within=within, one_start=name == "scale"))  # fmt: skip

    def cpu_seconds() -> Any:
        from flareport_cli.localpodman import podman_available

        real = bool(size["cpu_real_agent"]) and podman_available()  # without Podman, a simulated agent
        sizes = {"idle_seconds": size["cpu_idle_seconds"], "singles": size["cpu_singles"], "burst": size["cpu_burst"],
                 "running": size["cpu_running"]}  # fmt: skip
        try:
            return cpu.main_sync(workdir / "cpu", real_agent=real, **sizes)
        except Exception as exc:  # the engine's trouble must not cost the control plane's numbers
            if not real:
                raise
            traceback.print_exc()
            result = cpu.main_sync(workdir / "cpu-simulated", real_agent=False, **sizes)
            result["agent"] += f"; the real agent's run failed: {type(exc).__name__}: {exc}"
            return result

    def compose_up() -> Any:
        return composeup.main_sync(workdir / "compose-up", counts=size["compose_counts"],
                                   latencies=size["compose_latencies"], singles=size["compose_singles"],
                                   burst=size["compose_burst"], bursts=size["compose_bursts"])  # fmt: skip

    if "convergence" in only:
        section(results, "convergence", whole_stack)
    if "cloudflare_calls" in only:
        section(results, "cloudflare_calls", dns_worker_calls)
    if "scale" in only:
        section(results, "scale", lambda: fleet(size["rate_window"]))
        results["memory"] = {
            "hostnames": (results["scale"] or {}).get("hostnames"),
            **(results["scale"].get("rss_mb") or {}),
        }
    if "scale_long" in only and size["scale_long_window"]:
        # The same fleet under a window compressed less: whether the scale row's time is the windows' or the
        # machine's (report, "Scale").
        section(results, "scale_long", lambda: fleet(size["scale_long_window"], "scale-long"))
    if "scale_real" in only and size["scale_real_window"]:
        # Cloudflare's own window, uncompressed: the per-second limit and the fleet's CPU time, which no
        # compression shrinks, weigh on the time as much as they do against Cloudflare (about five minutes).
        section(results, "scale_real", lambda: fleet(size["scale_real_window"], "scale-real"))
    if "api" in only:
        section(results, "api", lambda: external.api(size["api_agents"], size["commands"], size["ingest_seconds"], 300))
    if "reconciler" in only:
        reconciler_runs: list[dict[str, Any]] = []
        for replicas in (1, 2):
            section(results, f"reconciler_{replicas}", lambda r=replicas: external.reconciler(  # type: ignore[misc]
                r, size["rec_agents"], size["rec_per_agent"], size["rec_updates"], 300))  # fmt: skip
            reconciler_runs.append(results.pop(f"reconciler_{replicas}"))
        results["reconciler"] = reconciler_runs
    if "event_flood" in only:
        flood_runs: list[dict[str, Any]] = []
        for flooders, connections in ((1, 4), (10, 1)):  # one stolen key at full speed; ten keys at once
            section(results, "event_flood", lambda f=flooders, c=connections: external.event_flood(  # type: ignore[misc]
                f, c, size["flood_seconds"], 300))  # fmt: skip
            flood_runs.append(results.pop("event_flood"))
        results["event_flood"] = flood_runs
    if "cpu" in only:
        section(results, "cpu", cpu_seconds)
    if "agent_engine" in only:
        if size["engine_containers"]:
            section(results, "agent_engine", lambda: external.agent_engine(size["engine_containers"], 5000, 300))
        else:
            results["agent_engine"] = {"error": "skipped in smoke mode (needs Podman)"}
    if "compose_up" in only:
        section(results, "compose_up", compose_up)
    return results


def byte_compile() -> None:
    """Write the project's bytecode before anything is measured, as installing the package does (pip compiles
    what it installs; the image runs from those files). The project is installed editable here, and with
    PYTHONDONTWRITEBYTECODE set (as on some machines) every process would compile its modules from source at
    each start: a cost no deployment pays, which a restart's CPU seconds would otherwise include."""
    for tree in ("libs", "services"):
        compileall.compile_dir(ROOT / tree, quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="small sizes: checks the harness, not the speed")
    parser.add_argument(
        "--output", type=Path, help="results JSON (default bench/results/latest.json; smoke: .../smoke.json)"
    )
    parser.add_argument("--markdown", type=Path, help="report (default docs/benchmarks.md; smoke: none)")
    parser.add_argument("--img-dir", type=Path, help="plots (default docs/img; smoke: next to the output)")
    parser.add_argument("--report-only", type=Path, metavar="JSON", help="only render the report of earlier results")
    parser.add_argument(
        "--only",
        type=lambda text: frozenset(text.split(",")),
        metavar="SECTION[,SECTION]",
        help=f"run only these sections ({', '.join(SECTIONS)}); results to bench/results/only.json.tmp and no "
        "report unless --output / --markdown say otherwise (docs/benchmarks.md is one whole run)",
    )
    args = parser.parse_args()
    setup_logging("error", "console")
    if args.only is not None and not args.only <= set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(args.only - set(SECTIONS)))}")
    size = SMOKE if args.smoke else FULL
    partial = args.only is not None
    default_output = "only.json.tmp" if partial else "smoke.json" if args.smoke else "latest.json"
    output = args.output or BENCH / "results" / default_output
    markdown = args.markdown or (None if args.smoke or partial else ROOT / "docs" / "benchmarks.md")
    img_dir = args.img_dir or (output.parent if args.smoke or partial else ROOT / "docs" / "img")
    if args.report_only is not None:  # the same numbers, rendered again (e.g. after a change of wording)
        results = json.loads(args.report_only.read_text())
        results["targets"] = report.evaluate_targets(results)
        args.report_only.write_text(json.dumps(results, indent=1) + "\n")
        report.plots(results, img_dir)
        if markdown is not None:
            markdown.write_text(report.markdown(results, os.path.relpath(img_dir, markdown.parent)) + "\n")
        return 0
    started = time.monotonic()
    byte_compile()
    # A leftover the engine could not let go of must not cost the run's numbers.
    with tempfile.TemporaryDirectory(prefix="fp-bench-", ignore_cleanup_errors=True) as tmp:
        results = run(size, Path(tmp), args.only or frozenset(SECTIONS))
    command = "python bench/run_all.py" + (" --smoke" if args.smoke else "")
    command += f" --only {','.join(sorted(args.only))}" if partial else ""
    results["meta"] = {
        "mode": "smoke" if args.smoke else "full", "command": command, "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "sizes": size, "output": os.path.relpath(output, ROOT),
    }  # fmt: skip
    results["targets"] = report.evaluate_targets(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    try:
        if partial:  # the plots draw sections a partial run may not have
            results["meta"]["plots"] = "not drawn: a run of some sections only"
        else:
            report.plots(results, img_dir)
    except ImportError as exc:  # matplotlib is a dev dependency: numbers matter more than pictures
        results["meta"]["plots"] = f"not drawn: {exc}"
    output.write_text(json.dumps(results, indent=1) + "\n")
    if markdown is not None:
        relative = os.path.relpath(img_dir, markdown.parent)
        markdown.write_text(report.markdown(results, relative) + "\n")
    # A section skipped for want of its tool (Podman) says so in the report; it is not a failure of the run.
    failed = [
        k
        for k, v in results.items()
        if isinstance(v, dict) and v.get("error") and k != "agent_engine" and not v.get("skipped")
    ]
    print(
        f"bench: wrote {output}" + (f" and {markdown}" if markdown else "") + f"; failed sections: {failed or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
