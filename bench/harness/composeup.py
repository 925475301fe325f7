"""Issue 20: ``docker compose up`` through the real agent, and the Cloudflare calls it costs.

One stack (redis, emulator, api, reconciler, dns-worker) and a real agent (``python -m flareport_cli agent``)
watching its own Podman host (``cpu.RealHost``). Per cell (containers x added emulator latency per call), the
containers are created and started one after another with the ``docker`` SDK, as ``docker compose up`` does: no
pause between them beyond the SDK's own calls, each with DockFlare-style labels publishing one hostname. So the
agent sees start events ~100-200 ms apart (what the engine takes per container), the arrival pattern a lone
change and a burst both miss.

Per cell:
- ``calls``, ``writes``, ``reads`` (and per method / endpoint): the emulator's counters from the first start to
  the moment everything is converged and nothing moved for ``QUIET_SECONDS`` (late jobs of a window count);
- ``engine_s``: the SDK's share, the first container's start call to the last one's return (each container is
  created just before its start, as compose does);
- ``after_first_start_s`` / ``after_last_start_s``: from the first start call / the last start's return to every
  hostname converged: its CNAME and ingress rule in the emulator (the write times the emulator recorded,
  ``cfwatch.Watcher``) and its rule's status ``active`` in the API's read model (polled once the emulator shows all
  of them, every ``STATUS_POLL_SECONDS``: that is the resolution of this part).

Single starts (issue 23: "single start, engine share included"): ``singles`` containers started one at a time
at 0 ms per call, each after the stack settled and a random pause of up to one engine event tick (Podman's file
events logger is read every 250 ms by each subscriber, so where a start falls in that tick decides most of its
delivery delay; the agent subscribes twice, half a tick apart, so the delay is at most 125 ms: docs/agent.md; the
issue's figures randomised start times the same way). Per start: the engine's start event (its own time
stamp) to the last write the hostname needed (``event_to_written_ms``, what DockFlare's figure measures), the
SDK's start call to that write, the start call's own duration, and the medians. Then bursts: 20 containers
started all at once (4 at a time, the engine's pace here), from the engine's last start event to every hostname
written (issue 23 compares it with DockFlare's 212 ms), and its calls; the median of ``bursts`` of them, since where
the last start falls in the engine's tick moves one burst's figure by up to half a tick (125 ms).

One container is published before the cells (its hostname is not counted): the zone id, the record list and the
tunnel's configuration are then cached as on a host where Flareport already runs, and every cell starts alike.
Cells keep their containers running (removing them would make deletion jobs during the next cell); all are
removed at the end, also when a cell failed. Every wait has a deadline: a stack that does not converge makes an
``error`` entry in its cell, and the next cell still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from . import cfwatch
from .agents import ADMIN
from .cpu import RealHost
from .stack import ZONE, BenchStack

# Measured before issue 20 on this kind of machine (20 containers started ~120 ms apart): calls, and seconds
# until all converged where given.
BEFORE = {
    "dockflare": {"0ms": {"calls": 100}, "100ms": {"calls": 100, "seconds": 11.1}},
    "flareport": {"0ms": {"calls": 57}, "100ms": {"calls": "32-33", "seconds": 2.85}},
}
QUIET_SECONDS = 1.0
# DockFlare 3.1.2, single start at 0 ms per call, engine included (median of 33 x 3 starts, issue 23).
DOCKFLARE_SINGLE_MS = 177.0
DOCKFLARE_BURST_MS = 212.0  # a burst of 20 at 0 ms per call, from the 20th start to all converged (issue 23)
ENGINE_TICK_SECONDS = 0.25  # Podman's file events logger: how often a waiting events stream looks for new lines
STATUS_POLL_SECONDS = 0.02
EVENT_WAIT_SECONDS = 10.0  # the longest the bench's own events stream may lag the agent's for one start event


def labels(host: str) -> dict[str, str]:
    """What a DockFlare user's compose file carries (the agent reads ``dockflare.`` labels as its own)."""
    return {"dockflare.enable": "true", "dockflare.hostname": host, "dockflare.service": "http://web:80"}


def compose_up(
    host: RealHost, names: list[str], hostnames: list[str], *, created_first: bool = False
) -> tuple[float, float]:
    """Create and start each container in turn (in a worker thread), or with ``created_first`` create them all and
    then start them one after another (what ``docker compose up`` itself does: its create phase, then its start
    phase); (first start call, last start returned) as wall-clock times, the clock the emulator stamps its writes
    with."""

    def create(name: str, hostname: str) -> Any:
        made = host.docker.containers.create(host.image, name=name, labels=labels(hostname), network_mode="none")
        host.made.append(made)
        return made

    pairs = list(zip(names, hostnames, strict=True))
    created = [create(*pair) for pair in pairs] if created_first else []
    first = last = 0.0
    for index, pair in enumerate(pairs):
        made = created[index] if created_first else create(*pair)
        if index == 0:
            first = time.time()
        made.start()
        last = time.time()
    return first, last


class Runner:
    def __init__(self, stack: BenchStack, session: aiohttp.ClientSession, watcher: cfwatch.Watcher) -> None:
        self.stack = stack
        self.session = session
        self.watcher = watcher
        self.redis = stack.redis()

    async def settle(self, within: float) -> None:
        """Nothing in flight in the streams, no target held for its coalescing window (its job would come later,
        with nothing in the streams meanwhile), and no Cloudflare call for ``QUIET_SECONDS``."""
        deadline = time.monotonic() + within
        last = await self._total_calls()
        calm_since = time.monotonic()
        while time.monotonic() - calm_since < QUIET_SECONDS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack did not settle within {within:.0f} s")
            await asyncio.sleep(0.1)
            total = await self._total_calls()
            if total != last or not await self._idle():
                last, calm_since = total, time.monotonic()

    async def _idle(self) -> bool:
        waiting = await self.redis.zcard(self.stack.keys.targets_waiting)
        return not waiting and await self.stack.idle(self.redis)

    async def _total_calls(self) -> int:
        return sum((await cfwatch.counters(self.session, self.stack.emulator_url))["counters"].values())

    async def active_at(self, hostnames: list[str], within: float) -> dict[str, float]:
        """When each hostname's rule was first seen with status ``active`` in the API's read model."""
        deadline = time.monotonic() + within
        wanted = set(hostnames)
        seen: dict[str, float] = {}
        while True:
            async with self.session.get(
                self.stack.api_url + "/api/v1/rules", params={"status": "active"}, headers=ADMIN
            ) as response:
                response.raise_for_status()
                rules = (await response.json())["rules"]
            now = time.time()
            for rule in rules:
                if rule["hostname"] in wanted:
                    seen.setdefault(rule["hostname"], now)
            if len(seen) == len(wanted):
                return seen
            if time.monotonic() > deadline:
                missing = sorted(wanted - seen.keys())
                raise TimeoutError(f"{len(missing)} of {len(wanted)} rules not active, e.g. {missing[:1]}")
            await asyncio.sleep(STATUS_POLL_SECONDS)

    async def publish(
        self, host: RealHost, hostnames: list[str], names: list[str], within: float, *, created_first: bool = False
    ) -> dict[str, Any]:
        """Start the containers back to back and wait until all are converged; the cell's numbers."""
        before = await cfwatch.counters(self.session, self.stack.emulator_url)
        for hostname in hostnames:
            self.watcher.expect(hostname, host.tunnel_id, time.time())
        deadline = time.monotonic() + within
        first, last = await asyncio.to_thread(compose_up, host, names, hostnames, created_first=created_first)
        if not await self.watcher.wait(hostnames, max(1.0, deadline - time.monotonic())):
            missing = [h for h in hostnames if h not in self.watcher.dns_seen or h not in self.watcher.ingress_seen]
            raise TimeoutError(f"{len(missing)} of {len(hostnames)} hostnames not in the emulator after {within:.0f} s")
        written = max(max(self.watcher.dns_seen[h], self.watcher.ingress_seen[h]) for h in hostnames)
        active = await self.active_at(hostnames, max(1.0, deadline - time.monotonic()))
        converged = max(written, *active.values())
        await self.settle(max(5.0, deadline - time.monotonic()))
        after = await cfwatch.counters(self.session, self.stack.emulator_url)
        by_endpoint = {k: v - before["counters"].get(k, 0) for k, v in after["counters"].items()}
        by_endpoint = {k: v for k, v in sorted(by_endpoint.items(), key=lambda kv: -kv[1]) if v}
        by_method: Counter[str] = Counter()
        for endpoint, count in by_endpoint.items():
            by_method[endpoint.split(" ", 1)[0]] += count
        return {
            **cfwatch.summarise(before, after), "by_method": dict(by_method), "by_endpoint": by_endpoint,
            "engine_s": round(last - first, 3), "after_first_start_s": round(converged - first, 3),
            "after_last_start_s": round(converged - last, 3),
            "cloudflare_done_after_last_start_s": round(written - last, 3),
            "cloudflare_done_after_first_start_s": round(written - first, 3), "written_at": written,
        }  # fmt: skip


async def run(
    stack: BenchStack,
    workdir: Path,
    *,
    counts: list[int],
    latencies: list[int],
    within: float,
    singles: int = 0,
    burst: int = 0,
    bursts: int = 1,
) -> dict[str, Any]:
    result: dict[str, Any] = {"agent": "real (Podman)", "before": BEFORE, "quiet_s": QUIET_SECONDS, "cells": []}
    host = await asyncio.to_thread(RealHost, stack, workdir)
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        await asyncio.to_thread(host.enroll)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            cfwatch.Watcher(session, stack.emulator_url) as watcher,
        ):
            runner = Runner(stack, session, watcher)
            try:
                await runner.settle(120)
                warm = await runner.publish(host, [f"compose-warmup.{ZONE}"], ["fpbench-compose-warmup"], within)
                result["warmup"] = {k: warm[k] for k in ("calls", "after_first_start_s")}
                if singles:
                    result["singles"] = await _singles(runner, host, singles, within)
                if burst:
                    result["burst"] = await _bursts(runner, host, burst, bursts, within)
                for count in counts:
                    for latency in latencies:
                        result["cells"].append(await _cell(runner, host, count, latency, within))
                # As docker compose up itself does: every container created, then started one after another. The
                # agent says how many are still to start, so the run folds and its last start goes at once.
                for latency in latencies:
                    cell = await _cell(runner, host, counts[0], latency, within, created_first=True)
                    result["cells"].append(cell)
            finally:
                await cfwatch.set_latency(session, stack.emulator_url, 0)
                await runner.redis.aclose()
    finally:
        await asyncio.to_thread(host.close)  # removes every container of the host, whatever happened above
    return result


async def _cell(
    runner: Runner, host: RealHost, count: int, latency: int, within: float, *, created_first: bool = False
) -> dict[str, Any]:
    cell: dict[str, Any] = {"containers": count, "latency_ms": latency, "created_first": created_first}
    kind = "created" if created_first else "compose"
    names = [f"fpbench-{kind}{count}-{latency}ms-{n}" for n in range(count)]
    hostnames = [f"{kind}{count}-{latency}ms-{n}.{ZONE}" for n in range(count)]
    try:
        await cfwatch.set_latency(runner.session, runner.stack.emulator_url, 0)
        await runner.settle(within)
        await cfwatch.set_latency(runner.session, runner.stack.emulator_url, latency)
        # The engine's pace, and so how many starts one job folds, depends on what else runs on the machine.
        cell["load_1m"] = round(os.getloadavg()[0], 2)
        cell.update(await runner.publish(host, hostnames, names, within, created_first=created_first))
        cell["converged"] = True
    except Exception as exc:  # a cell that does not converge is an error entry; the next cell still runs
        cell.update(converged=False, error=f"{type(exc).__name__}: {exc}")
    return cell


class EngineEvents:
    """The engine's start events, read by a plain event-stream client in a thread: container id -> the engine's own
    time stamp of its start (``timeNano``)."""

    def __init__(self, host: RealHost) -> None:
        self.started_at: dict[str, float] = {}
        self._stream = host.docker.events(decode=True, filters={"type": "container"}, since=int(time.time()))
        self._task = asyncio.create_task(asyncio.to_thread(self._watch))

    def _watch(self) -> None:
        with contextlib.suppress(Exception):  # ends when the stream is closed
            for raw in self._stream:
                if raw.get("Action") == "start":
                    self.started_at[raw["id"]] = raw["timeNano"] / 1e9

    async def of(self, container: Any, within: float = EVENT_WAIT_SECONDS) -> float:
        """The container's start event's time stamp. Asked once the agent acted on the start, but each events
        stream of Podman reads the events file on its own tick: the agent's may have had the event up to a tick
        before this one (a small burst converged before it, and the event looked missing)."""
        deadline = time.monotonic() + within
        while (event := self.started_at.get(container.id)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no start event seen for container {container.name} in {within:.0f} s")
            await asyncio.sleep(0.01)  # polls the reading thread's dict until the deadline
        return event

    async def close(self) -> None:
        self._stream.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 30)


async def _singles(runner: Runner, host: RealHost, count: int, within: float) -> dict[str, Any]:
    """``count`` lone starts at 0 ms per call, each on a settled stack, at a random point of the engine's tick.
    Timed from the engine's start event (its own time stamp), as DockFlare's figure is, and from the start call."""
    runs: list[dict[str, Any]] = []
    events = EngineEvents(host)
    try:
        await cfwatch.set_latency(runner.session, runner.stack.emulator_url, 0)
        for n in range(count):
            await runner.settle(within)
            # Randomises where the start falls in the engine's tick (not a wait for anything).
            await asyncio.sleep(random.uniform(0, ENGINE_TICK_SECONDS))
            cell = await runner.publish(host, [f"single-{n}.{ZONE}"], [f"fpbench-single-{n}"], within)
            runs.append({
                "event_to_written_ms": round((cell["written_at"] - await events.of(host.made[-1])) * 1000, 1),
                "start_to_written_ms": round(cell["cloudflare_done_after_first_start_s"] * 1000, 1),
                "engine_start_ms": round(cell["engine_s"] * 1000, 1), "calls": cell["calls"],
            })  # fmt: skip
    except Exception as exc:  # what was measured stays; the error says why there is no more
        return {"runs": runs, "error": f"{type(exc).__name__}: {exc}", **_single_medians(runs)}
    finally:
        await events.close()
    return {"runs": runs, **_single_medians(runs)}


async def _bursts(runner: Runner, host: RealHost, count: int, times: int, within: float) -> dict[str, Any]:
    """``times`` bursts of ``count`` (each on a settled stack) and their median: where the last start falls in the
    engine's event tick decides most of one burst's figure (0-125 ms), so one burst says little."""
    runs = [await _burst(runner, host, count, within, label=str(n) if times > 1 else "") for n in range(times)]
    if len(runs) == 1:
        return runs[0]
    done = [r for r in runs if "calls" in r]
    if not done:
        return {"containers": count, "runs": runs, "error": "no burst converged"}
    summary: dict[str, Any] = {
        "containers": count, "bursts": times, "runs": runs,
        "last_event_to_written_ms": round(statistics.median(r["last_event_to_written_ms"] for r in done), 1),
        "first_to_last_event_ms": round(statistics.median(r["first_to_last_event_ms"] for r in done), 1),
        "calls": max(r["calls"] for r in done), "writes": max(r["writes"] for r in done),
        "dockflare_ms": DOCKFLARE_BURST_MS,
    }  # fmt: skip
    if len(done) < len(runs):
        summary["error"] = next(r["error"] for r in runs if "error" in r)
    return summary


async def _burst(runner: Runner, host: RealHost, count: int, within: float, *, label: str = "") -> dict[str, Any]:
    """``count`` containers started all at once (4 at a time, as the engine takes them) at 0 ms per call: from the
    engine's last start event to every hostname written (issue 23: DockFlare 212 ms), and the calls."""
    events = EngineEvents(host)
    names = [f"fpbench-burst{label}-{n}" for n in range(count)]
    hostnames = [f"burst{label}-{n}.{ZONE}" for n in range(count)]
    try:
        await cfwatch.set_latency(runner.session, runner.stack.emulator_url, 0)
        await runner.settle(within)
        before = await cfwatch.counters(runner.session, runner.stack.emulator_url)
        for hostname in hostnames:
            runner.watcher.expect(hostname, host.tunnel_id, time.time())
        made = await asyncio.to_thread(start_together, host, names, hostnames)
        if not await runner.watcher.wait(hostnames, within):
            raise TimeoutError(f"the burst of {count} was not all in the emulator after {within:.0f} s")
        written = max(max(runner.watcher.dns_seen[h], runner.watcher.ingress_seen[h]) for h in hostnames)
        started = [await events.of(c) for c in made]
        last_event = max(started)
        await runner.settle(within)
        after = await cfwatch.counters(runner.session, runner.stack.emulator_url)
        return {"containers": count, "last_event_to_written_ms": round((written - last_event) * 1000, 1),
                "first_to_last_event_ms": round((last_event - min(started)) * 1000, 1),
                **cfwatch.summarise(before, after), "dockflare_ms": DOCKFLARE_BURST_MS}  # fmt: skip
    except Exception as exc:  # a burst that does not converge is an error entry; the cells still run
        return {"containers": count, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        await events.close()


def start_together(host: RealHost, names: list[str], hostnames: list[str]) -> list[Any]:
    """Create and start the containers 4 at a time (the engine's own pace on this machine); the containers."""

    def one(pair: tuple[str, str]) -> Any:
        made = host.docker.containers.create(host.image, name=pair[0], labels=labels(pair[1]), network_mode="none")
        made.start()
        return made

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(one, zip(names, hostnames, strict=True)))
    host.made.extend(made)
    return made


def _single_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {}
    return {
        "median_ms": round(statistics.median(r["event_to_written_ms"] for r in runs), 1),
        "start_call_median_ms": round(statistics.median(r["start_to_written_ms"] for r in runs), 1),
        "engine_start_median_ms": round(statistics.median(r["engine_start_ms"] for r in runs), 1),
        "max_calls": max(r["calls"] for r in runs),
        "dockflare_ms": DOCKFLARE_SINGLE_MS,
    }


def main_sync(
    workdir: Path,
    *,
    counts: list[int],
    latencies: list[int],
    within: float = 180.0,
    singles: int = 0,
    burst: int = 0,
    bursts: int = 1,
) -> dict[str, Any]:
    from flareport_cli.localpodman import podman_available

    if not podman_available():
        # Only a real engine's back-to-back starts say anything here: no numbers rather than simulated ones.
        return {"error": "podman and runc are not installed: compose up needs a real engine", "skipped": True}
    with BenchStack(workdir / "stack") as stack:
        return asyncio.run(
            run(
                stack,
                workdir,
                counts=counts,
                latencies=latencies,
                within=within,
                singles=singles,
                burst=burst,
                bursts=bursts,
            )
        )
