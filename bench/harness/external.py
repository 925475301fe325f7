"""The per-service bench scripts, run as they are (their own processes, their own redis-server) and read back.

- ``bench/api_ingest.py``: events/s accepted by one API process, and command delivery latency (XADD + PUBLISH by a
  stand-in reconciler -> the agent's long-poll answer) with N agents polling (items 4 and 5);
- ``bench/reconciler.py``: events/s and hostnames/s processed by 1 and 2 reconciler replicas, their RSS at
  20,000 hostnames (items 5 and 6);
- ``bench/event_flood.py``: one or many agent keys flood the events stream; another agent's single event's time to
  be processed (p50/p99), and accepted events lost (must be 0);
- ``bench/agent_events.py``: the engine's part of a container start (Podman's event delivery, the agent's batch)
  that the whole-stack convergence measurement starts after.
Each prints JSON; a script that fails or times out gives ``{"error": ...}`` instead of numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent


def run_script(name: str, args: list[str], timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    """The JSON objects the script printed, and an error (None when it ran to the end)."""
    command = [sys.executable, str(BENCH / name), *args]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False, cwd=BENCH.parent)
    except subprocess.TimeoutExpired:
        return [], f"{name} did not finish within {timeout:.0f} s"
    text = done.stdout.decode(errors="replace")
    objects = _json_objects(text)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return objects, f"{name} exited with {done.returncode}: {' | '.join(tail)}"
    return objects, None


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in the output: one per line, or one indented object."""
    decoder = json.JSONDecoder()
    found, index = [], 0
    while (start := text.find("{", index)) != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        index = end
    return found


def api(agents: int, commands: int, seconds: float, timeout: float) -> dict[str, Any]:
    args = ["--agents", str(agents), "--commands", str(commands), "--seconds", str(seconds)]
    objects, error = run_script("api_ingest.py", args, timeout)
    phases = {o.get("phase"): o for o in objects}
    return {"ingest": phases.get("ingest"), "long_poll": phases.get("long_poll"), "error": error}


def event_flood(flooders: int, connections: int, seconds: float, timeout: float) -> dict[str, Any]:
    """bench/event_flood.py: another agent's event latency while ``flooders`` keys flood, and accepted events lost."""
    args = ["--flooders", str(flooders), "--connections", str(connections), "--seconds", str(seconds)]
    objects, error = run_script("event_flood.py", args, timeout)
    phases = {o.get("phase"): o for o in objects}
    return {"baseline": phases.get("baseline"), **(phases.get("flood") or {}), "error": error}


def reconciler(replicas: int, agents: int, per_agent: int, updates: int, timeout: float) -> dict[str, Any]:
    args = ["--replicas", str(replicas), "--agents", str(agents), "--per-agent", str(per_agent)]
    args += ["--updates", str(updates), "--update-agents", str(min(20, agents))]
    objects, error = run_script("reconciler.py", args, timeout)
    return {**(objects[-1] if objects else {}), "error": error}


def agent_engine(containers: int, events: int, timeout: float) -> dict[str, Any]:
    try:
        from flareport_cli.localpodman import podman_available
    except ImportError:  # pragma: no cover - the CLI is part of the distribution
        return {"error": "flareport_cli.localpodman is missing"}
    if not podman_available():
        return {"error": "podman and runc are not installed: the engine's part was not measured"}
    objects, error = run_script("agent_events.py", ["--containers", str(containers), "--events", str(events)], timeout)
    found = objects[-1] if objects else {}
    # The script starts the containers 4 at a time: its latencies are those of a small burst (an upper bound for
    # an isolated start).
    return {**found.get("engine", {}), "pipeline": found.get("pipeline"), "error": error}
