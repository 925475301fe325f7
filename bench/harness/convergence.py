"""Issue 9, items 1 and 2 on the whole stack: convergence latency and Cloudflare calls of real arrivals.

One stack (redis, emulator, api, reconciler, dns-worker), a few simulated agents with their tunnels, then:
- isolated single container starts at 0 ms and 100 ms added emulator latency (latency and calls of each);
- bursts of 20 containers of one agent (DockFlare: 100 calls, 1.2 s / 11.2 s) at 0 ms and 100 ms;
- a steady 50 container starts/s spread over 3 agents, for ``seconds`` (p50/p95/p99 of the latency);
- bursts of 1, 100 and ``big_burst`` containers of one agent (calls against the minimum);
- bursts of 1, 20 and 100 containers with an Access policy (Access apps are one app per hostname);
- a restart with 50 containers running and nothing changed (the agent registers again and resends its inventory).
Latency = from posting the agent's event to the emulator completing the last write the hostname needed; the
engine's own delivery of the start event to the agent is measured separately (bench/agent_events.py). A single
start's time per hop comes from the processes' trace histograms (``harness.hops``).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

from . import cfwatch, hops
from .agents import SimAgent, container, hostname, make_agents, wait_tunnels
from .stack import BenchStack


def percentiles(values: list[float]) -> dict[str, float | None]:
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}

    def pick(q: float) -> float:
        return round(ms[min(len(ms) - 1, math.ceil(q * len(ms)) - 1)], 1)

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99), "max_ms": round(ms[-1], 1)}


class Runner:
    def __init__(self, stack: BenchStack, session: aiohttp.ClientSession, watcher: cfwatch.Watcher) -> None:
        self.stack = stack
        self.session = session
        self.watcher = watcher
        self.next_container: dict[int, int] = {}
        self.redis = stack.redis()

    async def settle(self, within: float = 60) -> None:
        """Wait until the control plane has nothing in flight, twice in a row half a second apart (held targets
        count as in flight). The second of calm also keeps each run out of the previous run's coalescing window
        (five times its job's duration at 100 ms per call), so that a single start is measured as the lone change
        it stands for, planned at once: with checks 0.2 s apart the singles at 100 ms per call were held."""
        deadline = time.monotonic() + within
        calm = 0
        while calm < 2 and time.monotonic() < deadline:
            calm = calm + 1 if await self.stack.idle(self.redis) else 0
            await asyncio.sleep(0.5)

    def _new(self, agent: SimAgent, count: int, *, access: bool = False) -> list[dict[str, Any]]:
        first = self.next_container.get(agent.index, 0)
        self.next_container[agent.index] = first + count
        return [container(agent.index, n, access=access) for n in range(first, first + count)]

    async def burst(self, agent: SimAgent, count: int, *, access: bool = False, within: float = 120) -> dict[str, Any]:
        """``count`` new containers of one agent, their start events in batches of 200 as the agent sends them."""
        await self.settle()
        infos = self._new(agent, count, access=access)
        hosts = [i["rules"][0]["hostname"] for i in infos]
        assert agent.tunnel_id is not None
        before = await cfwatch.counters(self.session, self.stack.emulator_url)
        traced = await hops.totals(self.session, list(self.stack.metrics_urls.values())) if count == 1 else None
        started = time.time()
        for host in hosts:
            self.watcher.expect(host, agent.tunnel_id, started)
        for chunk in range(0, count, 200):
            await agent.send([agent.start_event(i) for i in infos[chunk : chunk + 200]])
        converged = await self.watcher.wait(hosts, within)
        await self.settle()
        calls = cfwatch.summarise(before, await cfwatch.counters(self.session, self.stack.emulator_url))
        latencies = self.watcher.latencies(hosts)
        seconds = round(max(latencies), 3) if converged and latencies else None
        result: dict[str, Any] = {"rules": count, "access": access, "converged": converged, "seconds": seconds,
                                  **calls}  # fmt: skip
        if traced is not None:  # a lone start: its time on each hop (harness.hops)
            after = await hops.totals(self.session, list(self.stack.metrics_urls.values()))
            result["hops_ms"] = hops.per_event_ms(traced, after)
        return result

    async def restart_unchanged(self, agent: SimAgent, running: int) -> dict[str, Any]:
        first = await self.burst(agent, running)
        infos = [container(agent.index, n) for n in range(self.next_container[agent.index])]
        before = await cfwatch.counters(self.session, self.stack.emulator_url)
        await agent.register_again()
        await agent.send([agent.inventory_event(infos)])
        await self.settle()
        calls = cfwatch.summarise(before, await cfwatch.counters(self.session, self.stack.emulator_url))
        return {"containers": running, "first_publish": first, **calls}

    async def steady(self, agents: list[SimAgent], rate: float, seconds: float) -> dict[str, Any]:
        await self.settle()
        before = await cfwatch.counters(self.session, self.stack.emulator_url)
        hosts: list[str] = []
        sends: list[asyncio.Task[None]] = []
        begin = time.monotonic()
        total = int(rate * seconds)
        for i in range(total):
            # Paced by the clock, not by the answers: a slow answer must not lower the offered rate.
            await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
            agent = agents[i % len(agents)]
            info = self._new(agent, 1)[0]
            host = info["rules"][0]["hostname"]
            assert agent.tunnel_id is not None
            self.watcher.expect(host, agent.tunnel_id, time.time())
            hosts.append(host)
            sends.append(asyncio.create_task(agent.send([agent.start_event(info)])))
        offered = total / (time.monotonic() - begin)
        await asyncio.gather(*sends)
        converged = await self.watcher.wait(hosts, 120)
        await self.settle()
        calls = cfwatch.summarise(before, await cfwatch.counters(self.session, self.stack.emulator_url))
        latencies = self.watcher.latencies(hosts)
        return {
            "events": total, "offered_per_s": round(offered, 1), "converged": len(latencies),
            "all_converged": converged, **percentiles(latencies), "calls_per_event": round(calls["calls"] / total, 3),
            **calls, "latencies_ms": [round(x * 1000, 1) for x in latencies],
        }  # fmt: skip


async def run(stack: BenchStack, *, singles: int, rate: float, seconds: float, big_burst: int) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session,
        cfwatch.Watcher(session, stack.emulator_url) as watcher,
    ):
        agents = await make_agents(session, stack.api_url, 8)
        await wait_tunnels(agents, 120)
        # Every agent starts with an empty inventory, as a fresh host does.
        await asyncio.gather(*(a.send([a.inventory_event([])]) for a in agents))
        runner = Runner(stack, session, watcher)
        result: dict[str, Any] = {"agents": len(agents)}
        try:
            for latency in (0, 100):
                await cfwatch.set_latency(session, stack.emulator_url, latency)
                runs = [await runner.burst(agents[0], 1) for _ in range(singles)]
                result[f"single_{latency}ms"] = {
                    "runs": runs,
                    "median_ms": _median_ms([r["seconds"] for r in runs]),
                    "calls": max(r["calls"] for r in runs),
                    "writes": max(r["writes"] for r in runs),
                    "reads": max(r["reads"] for r in runs),
                    "hops_median_ms": hops.medians(runs),
                }
                result[f"burst20_{latency}ms"] = await runner.burst(agents[1], 20)
            await cfwatch.set_latency(session, stack.emulator_url, 0)
            # The steady load first: the state the watcher polls is smallest then.
            result["steady"] = await runner.steady(agents[5:], rate, seconds)
            result["bursts"] = [await runner.burst(agents[2], n) for n in (1, 100, big_burst)]
            result["access_bursts"] = [await runner.burst(agents[3], n, access=True) for n in (1, 20, 100)]
            result["restart_50_unchanged"] = await runner.restart_unchanged(agents[4], 50)
        finally:
            await cfwatch.set_latency(session, stack.emulator_url, 0)
            await runner.redis.aclose()
            for agent in agents:
                await agent.stop_polling()
    return result


def _median_ms(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return round(known[len(known) // 2] * 1000, 1) if known else None


__all__ = ["hostname", "run"]
