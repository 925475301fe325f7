"""Issue 9, items 3 and 6: a fleet from cold start to converged under Cloudflare's rate limit, and memory.

A fresh stack whose emulator enforces the rate limit (the window is time-compressed: the same number of requests
per window, a shorter window; the dns-worker is told the same limit and window). The admin creates ``agents`` keys
first, as an operator provisions them before the hosts boot (``keys_provisioned_s``, not part of the run). Then
that many simulated agents each register, send their inventory of ``per_agent`` containers (one hostname each) and
are enrolled, which creates one tunnel per agent. Converged = every hostname has its CNAME and every tunnel its
ingress rules. The time is from the first registration to the last write that was needed; calls and 429s are
counted by the emulator (the API's own 429s the fleet waited out: ``api_429s``). The services' resident memory is
read from /proc once everything is published (item 6).

The minimum number of calls: one tunnel create and one configuration PUT per agent, plus ceil(hostnames / DNS batch
size) batches. The rate-limit-bound minimum time (``minimum_seconds``) is the earliest the last of that many calls
can go under both of Cloudflare's limits, without any margin (``cloudflare_minimum``): at most ``rate_limit`` in any
window and at most 200 in any second from one address, every call ready at the start. ``window_minimum_seconds``
counts the window's limit alone: (ceil(calls / limit) - 1) whole windows. The two differ where the window is
compressed enough that the per-second limit, which the bench does not compress, fills a good part of it: 14 s
against 10 s at a 10 s window, 304 s against 300 s at Cloudflare's own 300 s.

``limits_floor_s``: the earliest the last call could go under the dns-worker's two limits alone (the window's
budget and the per-second cap below Cloudflare's 200 requests a second per address), every call ready at the start.

``limiter_floor_s``: the earliest the last call could go under the dns-worker's sliding-window rate limit, given when
the calls before it went (the n-th call waits until the (n - budget)-th is a span old): a run that ends near it was
paced by how early its first calls were made, that is by how fast the fleet came up.

The timeline (seconds from the first registration) says where the time went: when the fleet's registrations and
enrolments were done (the bench's side), and the first and last tunnel create, configuration PUT and DNS batch
Cloudflare answered (the emulator's request log). The CPU seconds each process spent from the first registration
to convergence (``/proc/<pid>/stat``; ``bench`` is this process, which drives the simulated fleet) and the
machine's 1-minute load average before and after say whether the run was short of cores: the stack is CPU-bound
on a 2-core machine, and other work on it slows a run down.

``one_start``: once converged, and once the fleet's calls have left the limiter's span, one more container is
started on a few agents in turn (``_one_start``): the time to publish it and the CPU each process spent on it, in
a zone holding the whole fleet's hostnames.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import aiohttp

from flareport_dns_worker.ratelimit import budget_of, per_second_cap, span_seconds

from . import cfwatch
from .agents import SimAgent, container
from .stack import BenchStack, cpu_seconds, cpu_seconds_precise


async def run(
    stack: BenchStack, *, agents: int, per_agent: int, within: float, batch_size: int = 200, one_start: bool = True
) -> dict[str, Any]:
    hostnames = agents * per_agent
    minimum_calls = 2 * agents + math.ceil(hostnames / batch_size)
    result: dict[str, Any] = {
        "agents": agents,
        "per_agent": per_agent,
        "hostnames": hostnames,
        "rate_limit": stack.rate_limit,
        "rate_window_s": stack.rate_window,
        "rate_limit_per_second": stack.per_second,
        "minimum_calls": minimum_calls,
        "minimum_seconds": cloudflare_minimum(minimum_calls, stack.rate_limit, stack.rate_window, stack.per_second),
        "window_minimum_seconds": (math.ceil(minimum_calls / stack.rate_limit) - 1) * stack.rate_window,
    }
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        fleet = [SimAgent(session, stack.api_url, i) for i in range(agents)]
        semaphore = asyncio.Semaphore(50)
        registered: list[float] = []
        enrolled: list[float] = []

        async def come_up(agent: SimAgent) -> None:
            async with semaphore:  # a fleet booting together, at the pace one bench process can drive
                await agent.register()
                registered.append(time.time())
                agent.start_polling()
                infos = [container(agent.index, n) for n in range(per_agent)]
                await agent.send([agent.inventory_event(infos)])
                await agent.enroll()
                enrolled.append(time.time())

        # The keys exist before the fleet boots, as an operator provisions them: the run measures the fleet coming
        # up, not the admin creating a thousand keys (``keys_provisioned_s``, outside the timed run).
        provisioning = time.time()

        async def provision(agent: SimAgent) -> None:
            async with semaphore:
                await agent.provision()

        await asyncio.gather(*(provision(a) for a in fleet))
        result["keys_provisioned_s"] = round(time.time() - provisioning, 2)
        SimAgent.refusals.clear()
        before = await cfwatch.counters(session, stack.emulator_url)
        redis = stack.redis()
        commands_before = await _commands(redis)
        cpu_before = _cpu(stack)
        result["load_1min"] = round(os.getloadavg()[0], 2)
        started = time.time()
        trail = CpuTrail(lambda: _cpu(stack))
        trail.start()
        try:
            await asyncio.gather(*(come_up(a) for a in fleet))
            result["registered_s"] = round(time.time() - started, 2)
            least = {SPANS["configuration_puts"]: agents, SPANS["dns_batches"]: math.ceil(hostnames / batch_size)}
            converged, progress = await _wait_converged(
                session, stack, fleet, per_agent, started + within, before=before, least=least
            )
            result.update(progress)
            result["converged"] = converged
            after = await cfwatch.counters(session, stack.emulator_url)
            result.update(cfwatch.summarise(before, after))
            by_endpoint = {k: v - before["counters"].get(k, 0) for k, v in after["counters"].items()}
            result["calls_by_endpoint"] = dict(sorted(by_endpoint.items(), key=lambda kv: -kv[1])[:12])
            if not converged:
                result["agents_behind"] = dict(list(progress.get("agents_behind", {}).items())[:20])
            else:
                result.pop("agents_behind", None)
            log = await cfwatch.control(session, stack.emulator_url + "/__emulator/requests?limit=100000")
            result["timeline"] = {
                "registrations_done": round(max(registered) - started, 2),
                "enrolments_done": round(max(enrolled) - started, 2),
                **_spans(log["requests"], started),
            }
            trail.stop()
            paced = _pacing_call(log["requests"], stack.rate_limit)
            if paced is not None:
                result["limiter_floor_s"] = round(paced.at + span_seconds(stack.rate_window) - started, 2)
                result["pacing"] = _pacing(paced, started, trail)
                before_run = sum(before["counters"].values())
                result["limits_floor_s"] = _limits_floor(paced.number - before_run, stack)
            if converged:
                result["seconds"] = round(_last_write(log["requests"]) - started, 2)
                result["calls_over_minimum"] = round(result["calls"] / minimum_calls, 3)
                # What the calls actually made cost in rate-limit windows alone (the minimum counts minimum calls).
                windows = math.ceil(result["calls"] / stack.rate_limit) - 1
                result["rate_bound_seconds_for_calls_made"] = windows * stack.rate_window
            cpu_after = _cpu(stack)
            result["cpu_seconds"] = {
                name: round(end - start, 1)
                for name, start in cpu_before.items()
                if start is not None and (end := cpu_after.get(name)) is not None
            }
            result["api_429s"] = dict(SimAgent.refusals)
            result["redis_commands"] = _per_agent(await _commands(redis), commands_before, agents)
            result["load_1min_after"] = round(os.getloadavg()[0], 2)
            result["rss_mb"] = stack.rss()
            if converged and one_start:
                # Once the fleet's calls have left the rate limit's span: a start measured with the budget spent
                # would wait for the limiter and its wider windows, not for the work the zone's size makes.
                free = _last_call(log["requests"]) + span_seconds(stack.rate_window)
                await asyncio.sleep(max(0.0, free - time.time()))
                result["one_start"] = await _one_start(session, stack, fleet, per_agent)
            result["dead_processes"] = stack.dead()
        finally:
            trail.stop()
            for agent in fleet:
                await agent.stop_polling()
            await redis.aclose()
    return result


async def _wait_converged(
    session: aiohttp.ClientSession,
    stack: BenchStack,
    fleet: list[SimAgent],
    per_agent: int,
    deadline: float,
    *,
    before: dict[str, Any],
    least: dict[str, int],
) -> tuple[bool, dict[str, Any]]:
    """Converged = every hostname published; ``least`` are the calls by endpoint convergence needs at least."""
    wanted = len(fleet) * per_agent
    progress: dict[str, Any] = {}
    while True:
        # The state is megabytes at this size (a copy and its JSON cost the emulator and this process about a
        # second of the shared cores): read it only once the call counters say convergence is possible, and
        # rarely then; the end time comes from the request log anyway.
        counters = (await cfwatch.counters(session, stack.emulator_url))["counters"]
        made = {e: counters.get(e, 0) - before["counters"].get(e, 0) for e in least}
        if any(made[e] < n for e, n in least.items()) and time.time() < deadline:
            await asyncio.sleep(1)
            continue
        state = await cfwatch.control(session, stack.emulator_url + "/__emulator/state")
        names, rules = cfwatch.published(state)
        tunnels = {a.tunnel_id for a in fleet if a.tunnel_id}
        ingress = sum(1 for tunnel_id, _ in rules if tunnel_id in tunnels)
        progress = {"cnames_published": len(names), "ingress_rules_published": ingress, "tunnels": len(tunnels)}
        # Counted in one pass over the rules: a scan of 20,000 rules per agent took seconds of the cores the
        # stack under measurement shares with this process.
        by_tunnel = Counter(tunnel_id for tunnel_id, _ in rules)
        per_tunnel = {a.agent_id: by_tunnel[a.tunnel_id] if a.tunnel_id else 0 for a in fleet}
        # Which agents are behind, for the report and for whoever debugs a run that did not converge.
        progress["agents_behind"] = {k: v for k, v in sorted(per_tunnel.items()) if v < per_agent}
        if len(names) >= wanted and ingress >= wanted and len(tunnels) == len(fleet):
            return True, progress
        if time.time() > deadline:
            return False, progress
        await asyncio.sleep(3)


def _cpu(stack: BenchStack, read: Callable[[int], float | None] = cpu_seconds) -> dict[str, float | None]:
    """CPU seconds so far of each process of the stack and of this bench process (the simulated fleet)."""
    return {name: read(pid) for name, pid in _pids(stack).items()}


def _stack_cpu(stack: BenchStack) -> dict[str, float]:
    """CPU seconds so far of the stack's own processes (this one aside), in nanoseconds' resolution: what a start
    or a quiet moment costs is milliseconds, which clock ticks of 10 ms per process would swamp."""
    read = _cpu(stack, cpu_seconds_precise)
    return {name: value for name, value in read.items() if name != "bench" and value is not None}


def _pids(stack: BenchStack) -> dict[str, int]:
    found = {name: p.pid for name, p in stack.processes.items()}
    process = getattr(stack.redis_server, "_process", None)  # LocalRedis keeps its process private
    if process is not None:
        found["redis-server"] = process.pid
    found["bench"] = os.getpid()
    return found


# Containers started one at a time once the fleet converged (``_one_start``): enough for a median, few enough to keep
# the run short.
ONE_STARTS = 3
# What counts as settled between them: the stack's processes together spent less than this in ``_QUIET_S``.
_QUIET_CPU_S = 0.02
_QUIET_S = 0.5


async def _one_start(
    session: aiohttp.ClientSession, stack: BenchStack, fleet: list[SimAgent], per_agent: int
) -> dict[str, Any]:
    """One more container started on an agent of the converged fleet, ``ONE_STARTS`` times in turn, each once the
    stack has settled: how long it took to publish (the DNS batch and the configuration PUT that carry it, written
    after the agent sent the start) and what it cost each process, in a zone that holds the whole fleet's
    hostnames. A start costs the same in a zone of a few hostnames only if nothing on its way grows with the zone."""
    # The fleet's heartbeats (one per agent every 15 s, in waves as the fleet came up in waves) would be counted
    # into the starts' CPU and delay their settling: the fleet keeps polling but stops beating for the measurement.
    await asyncio.gather(*(agent.stop_heartbeats() for agent in fleet))
    starts: list[dict[str, Any]] = []
    for k in range(min(ONE_STARTS, len(fleet))):
        agent = fleet[k]
        await _settled(stack, time.time() + 60)
        counted = await cfwatch.counters(session, stack.emulator_url)
        cpu_before = _stack_cpu(stack)
        sent = time.time()
        await agent.send([agent.start_event(container(agent.index, per_agent + k))])
        published = await _published_after(session, stack, agent.tunnel_id or "", sent, sent + 60)
        await _settled(stack, time.time() + 60)
        cpu_after = _stack_cpu(stack)
        starts.append({
            "ms": None if published is None else round((published - sent) * 1000, 1),
            "calls": cfwatch.summarise(counted, await cfwatch.counters(session, stack.emulator_url))["calls"],
            "cpu_s": {name: round(cpu_after[name] - begin, 3) for name, begin in cpu_before.items()
                      if name in cpu_after},
        })  # fmt: skip
    return {"zone_hostnames": len(fleet) * per_agent, "starts": starts}


async def _published_after(
    session: aiohttp.ClientSession, stack: BenchStack, tunnel_id: str, after: float, deadline: float
) -> float | None:
    """When the later of the two writes that publish a started container went (a DNS batch and the tunnel's
    configuration PUT, both answered after ``after``), or None if they did not by ``deadline``."""
    put = SPANS["configuration_puts"]
    while time.time() < deadline:
        log = await cfwatch.control(session, stack.emulator_url + "/__emulator/requests?limit=20")
        written: dict[str, float] = {}
        for entry in log["requests"]:
            at = cfwatch.epoch(entry["timestamp"])
            if at < after or not 200 <= entry["status"] < 300:
                continue
            if entry["endpoint"] == SPANS["dns_batches"]:
                written["dns"] = max(written.get("dns", 0.0), at)
            elif entry["endpoint"] == put and f"/cfd_tunnel/{tunnel_id}/" in entry["path"]:
                written["ingress"] = max(written.get("ingress", 0.0), at)
        if len(written) == 2:
            return max(written.values())
        await asyncio.sleep(0.01)
    return None


async def _settled(stack: BenchStack, deadline: float) -> None:
    """Wait until the stack's processes (this one aside) together spend less than ``_QUIET_CPU_S`` in ``_QUIET_S``:
    the results of what went before are applied, and a start measured now pays only for itself."""

    last = sum(_stack_cpu(stack).values())
    while time.time() < deadline:
        await asyncio.sleep(_QUIET_S)
        now = sum(_stack_cpu(stack).values())
        if now - last < _QUIET_CPU_S:
            return
        last = now


async def _commands(redis: Any) -> dict[str, tuple[int, int]]:
    """Redis's own count of each command and its microseconds so far (``INFO commandstats``)."""
    stats = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for name, value in stats.items()
        if isinstance(value, dict)
    }


def _per_agent(after: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]], agents: int) -> dict[str, Any]:
    """The run's Redis commands per agent, busiest first: where the stack's round trips and Redis's CPU went
    (``usec`` is Redis's own time running them, scripts included)."""
    made = {
        name: (calls - before.get(name, (0, 0))[0], usec - before.get(name, (0, 0))[1])
        for name, (calls, usec) in after.items()
    }
    busiest = sorted(((n, c, u) for n, (c, u) in made.items() if c > 0), key=lambda row: -row[2])[:12]
    by_command = {name: {"per_agent": round(calls / agents, 1), "cpu_s": round(usec / 1e6, 2)}
                  for name, calls, usec in busiest}  # fmt: skip
    return {"total_per_agent": round(sum(c for c, _ in made.values()) / agents, 1), "by_command": by_command}


class PacingCall(NamedTuple):
    number: int  # counted from the stack's start: the limit counts every call
    at: float  # when Cloudflare logged it (epoch seconds)


def _pacing_call(requests: list[dict[str, Any]], limit: int) -> PacingCall | None:
    """The call that paced the run's last one under the dns-worker's sliding window (the n-th call waits until the
    (n - budget)-th is a span old), or None when every call fits one budget. A span after it is the earliest the
    last call could go given when the others went (``limiter_floor_s``): a run that ends near that was as fast as
    the pace of its first calls allowed, and to end sooner those had to be made sooner."""
    times = sorted(cfwatch.epoch(e["timestamp"]) for e in requests if e["status"] != 429)
    budget = budget_of(limit)
    if len(times) <= budget:
        return None
    return PacingCall(len(times) - budget, times[len(times) - 1 - budget])


def cloudflare_minimum(calls: int, limit: int, window: float, per_second: int, second: float = 1.0) -> float:
    """The earliest the last of ``calls`` calls can go under two limits, every call ready at the start and sent the
    moment both allow it: at most ``limit`` in any ``window`` and at most ``per_second`` in any ``second`` (0: no
    such limit). With Cloudflare's limits as documented it is the rate-limit-bound minimum; with the dns-worker's
    (each less its margin) the earliest its limiter lets a run end (``_limits_floor``)."""
    times: list[float] = []
    for n in range(calls):
        at = times[n - limit] + window if n >= limit else 0.0
        if per_second and n >= per_second:
            at = max(at, times[n - per_second] + second)
        times.append(at)
    return round(times[-1], 2) if times else 0.0


def _limits_floor(paced: int, stack: BenchStack) -> float:
    """The earliest the last call could go under the dns-worker's limits alone, every call ready at the start: the
    ``paced``-th call of the run is the one a whole window's budget before the last."""
    budget = budget_of(stack.rate_limit)
    calls, second = per_second_cap(stack.per_second)
    return cloudflare_minimum(max(paced, 1) + budget, budget, span_seconds(stack.rate_window), calls, second)


class CpuTrail:
    """Every process's CPU seconds so far, sampled every ``every`` seconds by a thread of its own (the bench's
    loop is busy driving the fleet, and a sample must not wait for its turn there): ``at`` says what each process
    had spent by a moment of the run."""

    def __init__(self, sample: Callable[[], dict[str, float | None]], every: float = 0.25) -> None:
        self._sample = sample
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-trail", daemon=True)
        self.samples: list[tuple[float, dict[str, float | None]]] = []

    def start(self) -> None:
        self.samples.append((time.time(), self._sample()))
        self._thread.start()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append((time.time(), self._sample()))

    def at(self, moment: float) -> dict[str, float | None]:
        """The sample nearest ``moment`` (within ``every`` / 2 of it while the trail ran)."""
        return min(self.samples, key=lambda sample: abs(sample[0] - moment))[1]


def _pacing(paced: PacingCall, started: float, trail: CpuTrail) -> dict[str, Any]:
    """When the pacing call went and what each process had spent by then: the CPU the fleet needed to make its
    first calls, on which the run's time depends while the fleet comes up slower than the windows allow."""
    start, end = trail.at(started), trail.at(paced.at)
    spent = {name: round(e - b, 2) for name, b in start.items() if b is not None and (e := end.get(name)) is not None}
    total = sum(spent.values())
    return {
        "call": paced.number,
        "at_s": round(paced.at - started, 2),
        "cpu_s": spent,
        "total_cpu_s": round(total, 2),
        "cores": round(total / (paced.at - started), 2) if paced.at > started else None,
    }


def _last_call(requests: list[dict[str, Any]]) -> float:
    return max((cfwatch.epoch(e["timestamp"]) for e in requests), default=0.0)


def _last_write(requests: list[dict[str, Any]]) -> float:
    times = [
        cfwatch.epoch(e["timestamp"]) for e in requests if e["method"] in cfwatch.WRITES and 200 <= e["status"] < 300
    ]
    return float(max(times))


SPANS = {
    "tunnel_creates": "POST /accounts/{account_id}/cfd_tunnel",
    "configuration_puts": "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
    "dns_batches": "POST /zones/{zone_id}/dns_records/batch",
}


def _spans(requests: list[dict[str, Any]], started: float) -> dict[str, list[float]]:
    """[first, last] answered call of each kind, in seconds from ``started``."""
    spans: dict[str, list[float]] = {}
    for name, endpoint in SPANS.items():
        times = [
            cfwatch.epoch(e["timestamp"]) - started
            for e in requests
            if e["endpoint"] == endpoint and 200 <= e["status"] < 300
        ]
        if times:
            spans[name] = [round(min(times), 2), round(max(times), 2)]
    return spans
