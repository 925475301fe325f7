"""docs/benchmarks.md and its plots, generated from one run's results (never edited by hand)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from flareport_dns_worker.ratelimit import per_second_cap, span_seconds

from .targets import ISSUE20_FACTOR, evaluate


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    return evaluate(results)


# Why a target can be missed and what would fix it: shown next to a missed target only.
NOTES: dict[str, str] = {
    "single_0ms": "The control plane's part (agent event -> Cloudflare) is the smaller term; most of the time is the "
    "engine's delivery of the start event (Podman's file events logger; a plain event-stream client sees it after "
    "about the same time), the same ~150 ms that is inside DockFlare's figure. bench/agent_events.py starts its "
    "containers 4 at a time, so its p50 is an upper bound for an isolated start and varies from run to run; "
    "measuring one start at a time in the engine would make this comparison exact.",
    "control_plane_0ms": "The agent and the API take a few ms (table below); most of the share is the reconciler's "
    "inventory transaction, refresh and plan before the commit, and the dns-worker's lease and observed-state reads "
    "before its first call, each a few Redis round trips on 2 shared cores. The share sits at the target and "
    "crosses it from run to run (in earlier runs: 9.3 and 11.1 ms in two full runs of the same code, 12.8 before): "
    "the dns-worker now takes the lease and reads the applied version in one round trip (was three), and the "
    "reconciler records the agent's contact after the plan and reads agents, the Access catalog and the rule "
    "documents in one wait.",
    "single_100ms": "Besides the engine's part (see above), the control plane's part is two sequential calls: the "
    "dns-worker reads the tunnel configuration before every PUT (a PUT replaces the whole ingress, and rules added "
    "in the dashboard must be kept), then writes; the DNS write runs in parallel. Nothing proves a cached "
    "configuration current without that read, so it stays by default (CLOUDFLARE_TUNNEL_CONFIG_TRUST_SECONDS "
    "trades it for a window in which a dashboard edit can be overwritten: docs/dns-worker.md).",
    "burst20_100ms": "By design a lone change is planned at once (no waiting window) and what arrives while its job "
    "is in flight is folded into one pending job, so a burst costs the first container's job plus one or more jobs "
    "for the rest (each a DNS batch, a configuration GET and a PUT). A short linger (tens of ms) before planning "
    "a target would fold a burst into one DNS batch and one PUT; the GET before the PUT is the third call.",
    "burst1000_whole stack": "The writes are at the minimum (the coalescing window holds the burst's first batch "
    "and extends while batches keep arriving, so the rules go out in one round); the extra call is the tunnel "
    "configuration's GET before its PUT, which keeps rules added in the dashboard.",
    "burst1000_dns-worker": "The writes are at the minimum; the extra calls are the cold-cache reads (zone lookup, "
    "record list, configuration GET before the PUT): a constant 3 that matters for small bursts only.",
    "no_429": "The dns-worker's shared limiter is configured with the emulator's limit and window; a 429 means "
    "the two windows were not aligned (each starts at its own first request).",
    "restart50": "An unchanged inventory must plan to the versions already applied; writes here mean a plan "
    "differed from the stored observed state.",
    "command_p99": "The API wakes the agent's long-poll on a Redis PUBLISH; with 1,000 polls open on one process, "
    "on 2 cores shared with redis-server and the 1,000 simulated agents of the bench itself, the tail is the event "
    "loops' turn-around (p50 is a few ms). Fewer polls per API process (more replicas), or a machine where the "
    "simulated agents do not share the cores, would tell the API's own share.",
    "ingest": "One API process validates and XADDs every event; pipelining the XADDs of a request would raise it.",
    "scale": "The calls are at their minimum: a new tunnel costs its create and its first configuration PUT (the "
    "token comes with the create, and a tunnel this worker just created is not read before its first PUT), the "
    "DNS records go in full batches, and the few calls above the minimum are cold-cache reads (endpoint table "
    "below). The time is CPU. The dns-worker's limiter is a sliding window (any window Cloudflare counts in then "
    "holds at most its budget): the n-th call waits until the (n - 1,140)-th is 10.5 s old, so the last call goes "
    "10.5 s after the call that paced it (the row's limiter bound), and the run ends within about a second of that "
    "bound. How early that call went is the fleet coming up on 2 cores: the paragraph under the CPU table says "
    "when it went and what every process had spent by then. Ending within 10% of the minimum would need it by "
    "4.9 s, earlier than the per-second limit lets 974 calls go (5.25 s with the dns-worker's margin). While the "
    "fleet comes up the processes use 1.8-2.0 cores together, each service "
    "0.3-0.6 of one (sampled every 0.25 s): no one process holds the others up. Profiled in runs apart from this "
    "report's (py-spy, the first 6 s of the run): the reconciler's time goes to inventories (about 40%), tunnel "
    "results (about 20%: the agent's hostnames resolved again with their tunnel, its configuration planned) and "
    "job results; the API's to the command long-polls and their acks (about 40%: the start_tunnel command each new "
    "tunnel sends its agent), registrations and inventories (about 15% each); the dns-worker's to the Cloudflare "
    "SDK's request path (about 27%), leases and the limiter (about 8%): no part large enough that removing it "
    "would bring the work within 2 cores. With a window compressed less the fleet is up well before the first "
    "window ends, and the run is bound by the windows: the run with a 60 s window below (same fleet, same machine) "
    "is measured for that. Cloudflare also refuses more than 200 requests a second from one address, which the "
    "dns-worker keeps below (190 per 1.05 s, over all replicas) and the emulator enforces: so the first window's "
    "1,140 calls take at least 6 s even with CPU to spare, and with the dns-worker's margins the limits alone end "
    "this run no sooner than 15.75 s (the paragraph under the CPU table). The bench compresses Cloudflare's window "
    "30x but cannot compress that limit, nor the CPU time the fleet takes to come up: both weigh 30 times more here "
    "than against Cloudflare. The run under Cloudflare's own 300 s window, below, says what they weigh there.",
    "one_start": "A zone's job carries the zone's whole desired state: the reconciler plans it from the claims of "
    "every hostname in the zone, the dns-worker compares it with every record it manages there, and the result is "
    "read back into every rule's document. So one start costs time and CPU in proportion to its zone's size: "
    "under 20 ms and a few hundredths of a CPU-s in a zone of 100 hostnames (the smoke run), 0.6-0.9 s and "
    "1 CPU-s in one of 20,000. Profiled apart from this report (py-spy, five such starts): the plan took about two "
    "thirds of the reconciler's share (reading and decoding the zone's claims alone a third), applying the result "
    "to the documents nearly a third; comparing the desired records with the managed ones took most of the "
    "dns-worker's. Jobs that carry only the hostnames that changed would make a start's cost independent of its "
    "zone's size.",
    "reconciler_rss": "The reconciler keeps inventories in Redis, not in memory; a high RSS would be caches.",
    "cpu_restart50": "Most of a restart is the three interpreters importing their libraries (aiohttp, redis, "
    "structlog, the Cloudflare SDK and its pydantic models) before any work: one DockFlare process imports once. "
    "The stopped processes no longer tear their interpreters down once they stopped in order (0.09-0.14 CPU-s each "
    "before, 0.01 now).",
    "cpu_idle": "What is left are liveness timers, each a Redis round trip or two: the agent's heartbeat every 15 s "
    "and long-poll every 25 s (the API's check and history, the reconciler's update of the agent's record; "
    "cloudflared's state comes from the engine's events, not an inspect per heartbeat), each stream consumer's "
    "reclaim and read every 10 s once reclaims find nothing (three in the reconciler), the reconciler's Redis "
    "history check every 10 s and background pass when something is due (at most every 16 s), the API's long-poll "
    "fallback every 10 s and the dns-worker's tunnel list every 60 s. Before issue 23's idle work: 0.10-0.16 CPU-s. "
    "Next: one XREADGROUP for the reconciler's three streams, and reclaims aligned across them.",
    "cpu_single": "A lone start pays a whole round of the pipeline (API request, reconciler batch, job, "
    "Cloudflare calls, result); DockFlare's figure here is its burst's per-start cost, the stricter reading.",
}

IMAGES = ("bench-latency-cdf.png", "bench-calls-vs-minimum.png", "bench-throughput-replicas.png")


def _fmt(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def markdown(results: dict[str, Any], image_dir: str) -> str:
    meta = results["meta"]
    out = ["# Benchmarks", "", f"Generated by `{meta['command']}` on {meta['finished_at']} ({meta['cpus']} CPUs, "
           f"{meta['seconds']:.0f} s, mode `{meta['mode']}`). Every number in the tables comes from that run "
           f"(`{meta['output']}`); nothing is edited by hand. The explanations next to a missed target are written "
           "text: the figures they quote are from the runs that found the cause, and say so. Real processes on "
           "loopback: redis-server, the Cloudflare emulator, api, reconciler, dns-worker; agents are simulated over "
           "HTTP with the real agent protocol, except where the engine's part is measured with Podman.",
           ""]  # fmt: skip
    rows = evaluate(results)
    out += ["## Targets", ""]
    table = []
    for row in rows:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[row["met"]]
        note = row["detail"]
        if row["met"] is False and row["key"] in NOTES:
            note = f"{note}. Why: {NOTES[row['key']]}" if note else f"Why: {NOTES[row['key']]}"
        table.append([row["target"], row["measured"], verdict, note])
    out += _table(["target", "measured", "verdict", "notes"], table)
    out += _convergence(results.get("convergence") or {}, results.get("agent_engine") or {})
    out += _calls(results)
    out += _scale(results.get("scale") or {}, results.get("scale_long") or {}, results.get("scale_real") or {})
    out += _throughput(results)
    out += _event_flood(results.get("event_flood") or [])
    out += _cpu(results.get("cpu") or {})
    out += _compose_up(results.get("compose_up") or {})
    if "plots" in meta:
        out += ["## Plots", "", str(meta["plots"]), ""]
    else:
        out += ["## Plots", ""] + [f"![{name}]({image_dir}/{name})" for name in IMAGES] + [""]
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and v.get("error")}
    if errors:
        out += ["## Not measured in this run", ""] + [f"- {k}: {v}" for k, v in errors.items()] + [""]
    return "\n".join(out)


def _convergence(conv: dict[str, Any], engine: dict[str, Any]) -> list[str]:
    out = [
        "## 1. Convergence latency",
        "",
        "From the agent posting the container's start event to the emulator completing the last write the hostname "
        "needed (DNS record and ingress rule). " + _engine_sentence(engine),
        "",
    ]
    rows = []
    for latency in (0, 100):
        single = conv.get(f"single_{latency}ms") or {}
        rows.append(
            [
                f"single start ({len(single.get('runs', []))} runs, median)",
                latency,
                single.get("median_ms"),
                single.get("calls"),
                single.get("writes"),
            ]
        )
        burst = conv.get(f"burst20_{latency}ms") or {}
        seconds = burst.get("seconds")
        rows.append(["burst of 20", latency, None if seconds is None else round(seconds * 1000, 1),
                     burst.get("calls"), burst.get("writes")])  # fmt: skip
    out += _table(["case", "added latency per call (ms)", "converged after (ms)", "calls (max of runs)",
                   "writes (max of runs)"], rows)  # fmt: skip
    out += _hops(conv)
    steady = conv.get("steady") or {}
    if steady:
        out += [
            f"Steady load: {steady['events']} container starts at {steady['offered_per_s']}/s over "
            f"{conv.get('agents', 0) - 5} agents, 0 ms added latency: {steady['converged']} converged.",
            "",
        ]
        out += _table(["p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)", "calls per event"],
                      [[steady["p50_ms"], steady["p95_ms"], steady["p99_ms"], steady["max_ms"],
                        steady["calls_per_event"]]])  # fmt: skip
    restart = conv.get("restart_50_unchanged")
    if restart:
        out += [
            f"Restart with {restart['containers']} containers running, nothing changed: {restart['calls']} "
            f"Cloudflare calls, {restart['writes']} writes.",
            "",
        ]
    return out


# What each hop of a single start's trace covers (flareport_common.tracing), in the order an event walks them.
HOP_ROWS = (
    ("agent_to_api", "agent -> API", "the agent's request, the API's checks, up to the XADD to events"),
    ("api_to_reconciler", "API -> reconciler", "events stream: the XADD until a reconciler's handler starts"),
    ("reconciler_to_commit", "reconciler", "inventory transaction, refresh, touch and plan, up to the job's commit"),
    ("commit_to_worker", "reconciler -> dns-worker", "the commit script and cf-jobs, until the worker's handler"),
    ("worker_to_first_call", "dns-worker", "applied-version check, lease, observed state, up to the first call"),
    ("first_call_to_converged", "Cloudflare", "the calls, recording the applied version, the result"),
    ("control_plane", "control plane's share", "the agent's receipt of the event -> the first Cloudflare call"),
    ("end_to_end", "whole way", "the agent's receipt -> the job finished"),
)


def _hops(conv: dict[str, Any]) -> list[str]:
    singles = [conv.get(f"single_{latency}ms") or {} for latency in (0, 100)]
    if not any(s.get("hops_median_ms") for s in singles):
        return []
    out = [
        "### Where a single start's time goes",
        "",
        "Median per hop over the single starts above, from the trace every event carries and the "
        "`flareport_trace_hop_seconds` histograms of the processes (docs/operations.md, 'Tracing one event'). "
        "The simulated agent stamps its receipt just before posting, so the agent's own outbox is not in "
        "'agent -> API'. A start makes two jobs (DNS and ingress): the hops from the reconciler's commit on are "
        "averaged over both, the control plane's share runs to the first call of either, and the last two rows "
        "are totals.",
        "",
    ]
    rows = [[label, *(s.get("hops_median_ms", {}).get(hop) for s in singles), what] for hop, label, what in HOP_ROWS]
    return out + _table(["hop", "0 ms per call (ms)", "100 ms per call (ms)", "what it covers"], rows)


def _engine_sentence(engine: dict[str, Any]) -> str:
    if engine.get("latency_p50_ms") is None:
        return f"The engine's part (Podman event -> agent -> API) was not measured: {engine.get('error')}."
    return (
        "The engine's part (Podman event -> agent -> API) is measured separately with a real Podman and agent "
        f"(bench/agent_events.py, {_fmt(engine.get('containers'))} containers started 4 at a time): "
        f"p50 {_fmt(engine.get('latency_p50_ms'))} ms, p95 {_fmt(engine.get('latency_p95_ms'))} ms; a plain "
        f"event-stream client sees the engine's events after p50 {_fmt(engine.get('engine_delivery_p50_ms'))} ms."
        + _agent_hops(engine)
    )


def _agent_hops(engine: dict[str, Any]) -> str:
    outbox, read = engine.get("agent_outbox_mean_ms"), engine.get("engine_to_agent_mean_ms")
    if outbox is None or outbox < 0:
        return ""
    return (
        f" The agent's trace hops there (means): the engine's event time to the agent reading it {_fmt(read)} ms, "
        f"the agent's outbox (read -> batch accepted, 4 starts at a time) {_fmt(outbox)} ms."
    )


def _calls(results: dict[str, Any]) -> list[str]:
    out = [
        "## 2. Cloudflare calls per converged rule",
        "",
        "Minimum = ceil(N / 200) DNS batches + 1 configuration "
        "PUT (+ 1 create per Access app). *dns-worker*: the jobs the reconciler emits for a burst, coalesced, "
        "fed to the real dns-worker and a fresh emulator. *whole stack*: the burst's start events posted by a "
        "simulated agent through API and reconciler (200 per batch), 0 ms added latency.",
        "",
    ]
    rows = []
    for source, bursts in (("dns-worker", (results.get("cloudflare_calls") or {}).get("bursts") or ()),
                           ("whole stack", (results.get("convergence") or {}).get("bursts") or ()),
                           ("whole stack", (results.get("convergence") or {}).get("access_bursts") or ())):  # fmt: skip
        for b in bursts:
            minimum = b.get("minimum") or (-(-b["rules"] // 200) + 1 + (b["rules"] if b["access"] else 0))
            rows.append(
                [
                    source,
                    b["rules"],
                    "yes" if b["access"] else "no",
                    b["calls"],
                    b["writes"],
                    b["reads"],
                    minimum,
                    round(b["calls"] / b["rules"], 4),
                    round(minimum / b["rules"], 4),
                ]
            )
    out += _table(["measured at", "rules", "Access", "calls", "writes", "reads", "minimum", "calls/rule",
                   "minimum/rule"], rows)  # fmt: skip
    access = [b for b in (results.get("cloudflare_calls") or {}).get("bursts") or () if b.get("by_endpoint")]
    if access:
        largest = access[-1]
        calls = ", ".join(f"`{k}` {v}" for k, v in largest["by_endpoint"].items())
        out += [f"Calls of the largest Access burst at the dns-worker ({largest['rules']:,} apps): {calls}. A new "
                "app is created at once (Cloudflare refuses a second app on a domain, and only then is the domain "
                "looked up); the `flareport` Access tag is made once per worker.", ""]  # fmt: skip
    return out


def _scale(scale: dict[str, Any], long: dict[str, Any], real: dict[str, Any]) -> list[str]:
    if not scale:
        return ["## 3. Scale", "", "Not measured in this run.", ""]
    out = ["## 3. Scale and 6. memory", "", f"{scale['agents']:,} simulated agents x {scale['per_agent']} containers "
           f"({scale['hostnames']:,} hostnames, one tunnel per agent), cold start to converged. The emulator "
           f"enforces {scale['rate_limit']} requests per {scale['rate_window_s']} s window: Cloudflare's 1,200 per "
           f"300 s with the window compressed {300 / scale['rate_window_s']:.0f}x (the dns-worker is configured the "
           "same way).", ""]  # fmt: skip
    if scale.get("keys_provisioned_s") is not None:
        out += [f"The admin created the fleet's keys first, in {scale['keys_provisioned_s']} s, as an operator "
                "provisions them before the hosts boot: not part of the time. The fleet waited out "
                f"{sum((scale.get('api_429s') or {}).values())} 429s of the API's own protection.", ""]  # fmt: skip
    out += _table(["converged", "time (s)", "rate-limit-bound minimum (s)", "calls", "writes", "reads",
                   "minimum calls", "429s"],
                  [[scale["converged"], scale.get("seconds"), scale["minimum_seconds"], scale.get("calls"),
                    scale.get("writes"), scale.get("reads"), scale["minimum_calls"],
                    scale.get("http_429")]])  # fmt: skip
    if scale.get("window_minimum_seconds") is not None:
        out += [f"The rate-limit-bound minimum is the earliest the minimum calls could all go under both of "
                f"Cloudflare's limits, without any margin: {scale['rate_limit']} per window, and "
                f"{scale.get('rate_limit_per_second')} a second from one address, which the bench does not compress. "
                f"Counting the window's limit alone, it would be {scale['window_minimum_seconds']} s.", ""]  # fmt: skip
    if not scale.get("converged"):
        out += [
            f"Published when the time ran out: {scale.get('cnames_published')} CNAMEs, "
            f"{scale.get('ingress_rules_published')} ingress rules, {scale.get('tunnels')} tunnels; agents behind "
            f"(agent id: its published ingress rules): {scale.get('agents_behind') or 'none'}.",
            "",
        ]
    timeline = scale.get("timeline") or {}
    if timeline:
        out += [
            "Where the time went (seconds from the first registration; first and last call Cloudflare answered):",
            "",
        ]
        rows = [[name.replace("_", " "), "", value] for name, value in timeline.items() if not isinstance(value, list)]
        rows += [[name.replace("_", " "), *value] for name, value in timeline.items() if isinstance(value, list)]
        out += _table(["step", "first", "last"], rows)
    cpu = scale.get("cpu_seconds") or {}
    if cpu:
        out += [
            f"CPU seconds per process from the first registration to converged (1-minute load average of the "
            f"machine {scale.get('load_1min')} before, {scale.get('load_1min_after')} after; 2 cores):",
            "",
        ]
        out += _table(list(cpu), [list(cpu.values())])
    out += _pacing(scale)
    out += _one_start(scale.get("one_start") or {})
    by_endpoint = scale.get("calls_by_endpoint") or {}
    if by_endpoint:
        out += ["Where the calls went (the 12 busiest endpoints):", ""]
        out += _table(["endpoint", "calls"], [[f"`{k}`", v] for k, v in by_endpoint.items()])
    out += _scale_long(long)
    out += _scale_long(real)
    out += [f"Resident memory (MB) at {scale['hostnames']:,} hostnames:", ""]
    rss = scale.get("rss_mb") or {}
    out += _table(list(rss), [list(rss.values())])
    return out


def _pacing(scale: dict[str, Any]) -> list[str]:
    """What the fleet spent before the call that paced the last one, and the cores the 1.5x target needed."""
    pacing = scale.get("pacing") or {}
    if not pacing or not scale.get("minimum_seconds"):
        return []
    span = span_seconds(scale["rate_window_s"])
    target = scale["minimum_seconds"] * ISSUE20_FACTOR
    by = target - span
    cpu = pacing["cpu_s"]
    # The emulator stands in for Cloudflare and the bench process for the hosts: neither runs on a real
    # deployment's machine, so what the services alone needed is said apart.
    services = sum(v for name, v in cpu.items() if name not in ("cloudflare", "bench"))
    needed = "more than any machine has"
    if by > 0:
        needed = (f"{pacing['total_cpu_s'] / by:.1f} cores, {services / by:.1f} for the services alone (api, "
                  f"reconciler, dns-worker, redis-server: {services:.2f} CPU-s)")  # fmt: skip
    limits = ""
    floor = scale.get("limits_floor_s")
    if floor is not None and scale.get("rate_limit_per_second"):
        per_second = scale["rate_limit_per_second"]
        calls, second = per_second_cap(per_second)
        limits = (
            f" But Cloudflare also refuses more than {per_second} requests a second from one address, and the "
            f"dns-worker keeps {calls} calls per {second:g} s below that: with every "
            f"call ready at the start, its limits alone let the last call go no sooner than {floor} s "
            f"({floor / scale['minimum_seconds']:.3f}x the minimum)"
            + (", so no CPU makes the target." if floor > target else ".")
        )
    return [
        f"The call that paced the last one (call {pacing['call']:,}: the limiter lets the last call go once that "
        f"one is {span:g} s old) went {pacing['at_s']} s after the first registration; by then the processes had "
        f"spent {pacing['total_cpu_s']} CPU-s, {pacing['cores']} of the machine's 2 cores. To end within "
        f"{ISSUE20_FACTOR}x the minimum ({target:g} s) it had to go by {by:g} s: the same work in that time needs "
        f"{needed}.{limits}",
        "",
        *_table(list(cpu), [list(cpu.values())]),
    ]


def _one_start(one: dict[str, Any]) -> list[str]:
    """One more container started on the converged fleet, a few times in turn: what a start costs in a zone of
    that size (the single start of section 1 is in a zone of a few hostnames)."""
    starts = one.get("starts") or []
    if not starts:
        return []
    times = [s["ms"] for s in starts if s.get("ms") is not None]
    names = sorted({name for s in starts for name in s["cpu_s"]})
    cpu = {name: round(statistics.median(s["cpu_s"].get(name, 0.0) for s in starts), 3) for name in names}
    published = (f"published in {statistics.median(times):.0f} ms (median; {', '.join(f'{t:.0f}' for t in times)}: "
                 "the DNS batch and the configuration PUT that carry it written after the agent sent the start)"
                 if times else "not published within a minute")  # fmt: skip
    return [
        f"Then one more container started on {len(starts)} agents in turn, each once the stack had settled and "
        f"the fleet's calls had left the limiter's span, in the zone now holding {one['zone_hostnames']:,} "
        f"hostnames: {published}, {', '.join(str(s['calls']) for s in starts)} calls. The CPU-s each start cost "
        f"(median; {sum(cpu.values()):.2f} in all):",
        "",
        *_table(list(cpu), [list(cpu.values())]),
        NOTES["one_start"],
        "",
    ]


def _scale_long(long: dict[str, Any]) -> list[str]:
    """The same fleet under a window compressed less: with more time per window, the fleet comes up within the
    first one, and the run is bound by the windows alone, or not."""
    if not long:
        return []
    window = long.get("rate_window_s")
    head = "The same fleet with a longer window:"
    if window == 300:
        head = (
            "The same fleet under Cloudflare's own window, 300 s, not compressed (a stack of its own, same "
            "machine): the per-second limit and the fleet's CPU time weigh on it as they would against Cloudflare:"
        )
    elif window:
        head = (f"The same fleet with a {window} s window (Cloudflare's 5 minutes compressed {300 / window:.0f}x "
                "instead; a stack of its own, same machine):")  # fmt: skip
    if long.get("error") or not long.get("converged"):
        return [head, "", f"not converged: {long.get('error') or 'the time ran out'}.", ""]
    ratio = long["seconds"] / long["minimum_seconds"] if long.get("minimum_seconds") else None
    timeline = long.get("timeline") or {}
    cpu = sum((long.get("cpu_seconds") or {}).values())
    return [head, "", *_table(
        ["time (s)", "rate-limit-bound minimum (s)", "time / minimum", "limiter bound (s)", "calls", "429s",
         "registrations done (s)", "CPU-s"],
        [[long["seconds"], long["minimum_seconds"], f"{ratio:.3f}x" if ratio else "", long.get("limiter_floor_s"),
          long.get("calls"), long.get("http_429"), timeline.get("registrations_done"), round(cpu, 1)]])]  # fmt: skip


def _throughput(results: dict[str, Any]) -> list[str]:
    api = results.get("api") or {}
    ingest, poll = api.get("ingest") or {}, api.get("long_poll") or {}
    out = ["## 4. Command delivery and 5. ingest", ""]
    out += _table(["command delivery: agents polling", "commands", "p50 (ms)", "p99 (ms)", "max (ms)"],
                  [[poll.get("agents"), poll.get("delivered"), poll.get("p50_ms"), poll.get("p99_ms"),
                    poll.get("max_ms")]])  # fmt: skip
    out += _table(["ingest: writers", "events per request", "events/s (one API process)", "requests/s"],
                  [[ingest.get("writers"), ingest.get("batch"), ingest.get("events_per_s"),
                    ingest.get("requests_per_s")]])  # fmt: skip
    rows = []
    for run in results.get("reconciler") or ():
        snap, starts = run.get("snapshots") or {}, run.get("container_starts") or {}
        rows.append([run.get("replicas"), run.get("hostnames"), snap.get("events_per_s"), snap.get("hostnames_per_s"),
                     starts.get("events_per_s"), starts.get("jobs_per_1000_events"),
                     max(run.get("reconciler_rss_mb") or [0]) or None])  # fmt: skip
    out += ["Reconciler replicas (bench/reconciler.py: inventories of every agent, then single container starts):", ""]
    out += _table(["replicas", "hostnames", "inventory events/s", "hostnames/s", "container starts/s",
                   "jobs per 1,000 starts", "max RSS (MB)"], rows)  # fmt: skip
    return out


def _event_flood(runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return []
    out = ["## Fairness under an events flood", "",
           "bench/event_flood.py: attacker keys post batches of 100 tiny events as fast as they are answered (ignoring "
           "`Retry-After`) with the default quotas, while another agent sends one new container every 0.2 s; its "
           "latency runs from the API's 2xx to the reconciler's record of the container. `lost` = events the API "
           "accepted minus events the reconciler finished.", ""]  # fmt: skip
    rows = []
    for run in runs:
        victim, base = run.get("victim") or {}, run.get("baseline") or {}
        rows.append([run.get("flooders"), run.get("flood_offered_per_s"), run.get("flood_accepted_per_s"),
                     base.get("p50_ms"), victim.get("p50_ms"), victim.get("p99_ms"), victim.get("max_ms"),
                     run.get("accepted"), run.get("lost"), run.get("error") or ""])  # fmt: skip
    out += _table(["flooding keys", "offered events/s", "accepted events/s", "alone p50 (ms)", "flood p50 (ms)",
                   "flood p99 (ms)", "flood max (ms)", "accepted", "lost", "error"], rows)  # fmt: skip
    return out


def _cpu(cpu: dict[str, Any]) -> list[str]:
    if not cpu or cpu.get("error"):
        return []
    names = list(cpu.get("processes") or ())
    dockflare = cpu.get("dockflare") or {}
    out = ["## 7. CPU", "", f"harness.cpu: user + system CPU seconds from `/proc/<pid>/stat` of each process; agent: "
           f"{cpu.get('agent')}. Each window starts with nothing in flight and ends when the hostnames are "
           "published and every stream is acknowledged again; the restart stops api, reconciler and dns-worker "
           "(SIGTERM) and starts them again, their imports included, until the agent's resent inventory is "
           "processed.", ""]  # fmt: skip
    idle, after = cpu.get("idle") or {}, cpu.get("idle_after") or {}
    restart = dockflare.get("restart50") or (None, None)
    rows = [
        [f"idle, per 30 s (measured over {_fmt(idle.get('seconds'))} s)",
         *[(idle.get("per_30s") or {}).get(n) for n in [*names, "total"]], dockflare.get("idle_per_30s")],
        ["idle again after the work, per 30 s",
         *[(after.get("per_30s") or {}).get(n) for n in [*names, "total"]], dockflare.get("idle_per_30s")],
        [f"one container start (mean of {len((cpu.get('single') or {}).get('runs') or ())})",
         *[((cpu.get("single") or {}).get("cpu_s") or {}).get(n) for n in [*names, "total"]], dockflare.get("single")],
        [f"burst of {_fmt((cpu.get('burst') or {}).get('containers'))}",
         *[((cpu.get("burst") or {}).get("cpu_s") or {}).get(n) for n in [*names, "total"]], dockflare.get("burst20")],
        [f"restart with {_fmt((cpu.get('restart') or {}).get('containers'))} containers, nothing changed",
         *[((cpu.get("restart") or {}).get("cpu_s") or {}).get(n) for n in [*names, "total"]],
         f"{restart[0]}-{restart[1]}"],
    ]  # fmt: skip
    out += _table(["CPU-s", *names, "total", "DockFlare 3.1.2"], rows)
    return out


def _compose_up(compose: dict[str, Any]) -> list[str]:
    if not compose:
        return []
    out = ["## 8. docker compose up", "", "harness.composeup: containers created and started one after another "
           "with the `docker` SDK on Podman, each publishing one hostname through the real agent (the issue's "
           "scenario), and, as `docker compose up` itself does, all created first and then started one after "
           "another (its create phase, then its start phase: the agent then tells the master how many are still to "
           "start, docs/reconciler.md, 'The window'); Cloudflare calls are the emulator's from the first start "
           "until all converged and quiet, converged means every hostname's CNAME and ingress rule are in the "
           "emulator and its rule's status is `active`, and the engine's share is the SDK's first start call to "
           "its last start returning.",
           ""]  # fmt: skip
    if compose.get("error"):
        return [*out, f"Not measured: {compose['error']}", ""]

    def seconds(value: float | None) -> str | None:  # _fmt would give sub-second times four decimals
        return None if value is None else f"{value:.2f}"

    out += _singles_with_engine(compose.get("singles") or {})
    out += _burst_with_engine(compose.get("burst") or {})
    rows = []
    for cell in compose.get("cells") or ():
        order = "all created, then started" if cell.get("created_first") else "each created, then started"
        rows.append([cell["containers"], order, cell["latency_ms"], cell.get("calls"), cell.get("writes"),
                     cell.get("reads"),
                     seconds(cell.get("engine_s")), seconds(cell.get("after_first_start_s")),
                     seconds(cell.get("after_last_start_s")), cell.get("load_1m"),
                     cell.get("error") or ""])  # fmt: skip
    out += _table(["containers", "order", "added latency per call (ms)", "calls", "writes", "reads",
                   "engine: first -> last start (s)", "converged after the first start (s)",
                   "converged after the last start (s)", "machine load (1 min) before", "error"], rows)  # fmt: skip
    before = compose.get("before") or {}
    dockflare, flareport = before.get("dockflare") or {}, before.get("flareport") or {}

    def earlier(who: dict[str, Any], latency: str) -> str:
        cell = who.get(latency) or {}
        return f"{cell.get('calls')} calls" + (f" / {cell['seconds']} s to all converged" if "seconds" in cell else "")

    out += [f"Measured before issue 20 (20 containers ~120 ms apart): at 0 ms per call DockFlare 3.1.2 "
            f"{earlier(dockflare, '0ms')}, Flareport {earlier(flareport, '0ms')}; at 100 ms per call DockFlare "
            f"{earlier(dockflare, '100ms')}, Flareport {earlier(flareport, '100ms')}. One container was published "
            "before the cells (not counted), so every cell starts with the zone and the tunnel's configuration "
            "known, as on a host where Flareport already runs.", ""]  # fmt: skip
    return out


def _singles_with_engine(singles: dict[str, Any]) -> list[str]:
    runs = singles.get("runs") or []
    if not runs:
        return [f"Single starts with the engine: not measured ({singles.get('error')}).", ""] if singles else []
    values = sorted(r["event_to_written_ms"] for r in runs)
    out = ["### Single starts with the engine", "",
           f"{len(runs)} containers started one at a time through the real agent at 0 ms per call, each on a "
           "settled stack and at a random point of the engine's 250 ms event tick (Podman's file events logger is "
           "read that often by each subscriber: where a start falls in the tick decides most of its delivery delay; "
           "the agent subscribes twice, half a tick apart, so an event waits at most 125 ms for one of them, "
           "docs/agent.md). From the engine's "
           "start event (its own time stamp, as DockFlare's figure is measured) to the emulator's last write the "
           "hostname needed. The engine stamps the event during the start call, so timed from the call (second "
           "column) a start takes longer by that part of the call:", ""]  # fmt: skip
    out += _table(["median (ms)", "min (ms)", "max (ms)", "from the start call, median (ms)",
                   "the start call itself, median (ms)", "calls (max)", "DockFlare 3.1.2, median (ms)"],
                  [[singles.get("median_ms"), values[0], values[-1], singles.get("start_call_median_ms"),
                    singles.get("engine_start_median_ms"), singles.get("max_calls"),
                    singles.get("dockflare_ms")]])  # fmt: skip
    if singles.get("error"):
        out += [f"Stopped early: {singles['error']}", ""]
    return out


def _burst_with_engine(burst: dict[str, Any]) -> list[str]:
    if not burst:
        return []
    if burst.get("error"):
        return [f"Burst of {burst.get('containers')} with the engine: not measured ({burst['error']}).", ""]
    return [f"Burst with the engine: {burst['containers']} containers started all at once (4 at a time, the "
            f"engine's pace here; their start events spread over {burst['first_to_last_event_ms']} ms), 0 ms per "
            f"call: the engine's last start event to the last write {burst['last_event_to_written_ms']} ms "
            f"(DockFlare 3.1.2: {burst['dockflare_ms']:.0f} ms), {burst['calls']} calls, {burst['writes']} writes.",
            ""]  # fmt: skip


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    made = []
    conv = results.get("convergence") or {}
    fig, ax = plt.subplots(figsize=(7, 4))
    series = {
        f"steady {(conv.get('steady') or {}).get('offered_per_s')}/s, 0 ms": (conv.get("steady") or {}).get(
            "latencies_ms"
        )
        or [],
        "single start, 0 ms": _single_ms(conv, 0),
        "single start, 100 ms": _single_ms(conv, 100),
    }
    for label, values in series.items():
        if values:
            xs = sorted(values)
            # A handful of single starts would be an invisible step: show their points.
            marker = "o" if len(xs) <= 10 else None
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label, marker=marker)
    ax.set_xlabel("agent event -> Cloudflare writes done (ms)")
    ax.set_ylabel("fraction converged")
    ax.set_title("Convergence latency (CDF)")
    ax.grid(alpha=0.3)
    ax.legend()
    made.append(_save(fig, directory / IMAGES[0]))

    fig, ax = plt.subplots(figsize=(7, 4))
    bursts = [b for b in (results.get("cloudflare_calls") or {}).get("bursts", ()) if not b["access"]]
    stack = {b["rules"]: b for b in conv.get("bursts", ())}
    labels = [f"{b['rules']:,}" for b in bursts]
    xs = list(range(len(bursts)))
    ax.bar([x - 0.27 for x in xs], [b["minimum"] for b in bursts], 0.27, label="minimum")
    ax.bar(list(xs), [b["calls"] for b in bursts], 0.27, label="dns-worker (coalesced jobs)")
    ax.bar([x + 0.27 for x in xs], [stack[b["rules"]]["calls"] if b["rules"] in stack else 0 for b in bursts], 0.27,
           label="whole stack (events)")  # fmt: skip
    ax.set_xticks(list(xs), labels)
    ax.set_yscale("log")
    ax.set_xlabel("rules in the burst")
    ax.set_ylabel("Cloudflare calls")
    ax.set_title("Cloudflare calls vs the minimum")
    ax.legend()
    made.append(_save(fig, directory / IMAGES[1]))

    fig, ax = plt.subplots(figsize=(7, 4))
    runs = [r for r in results.get("reconciler") or () if r.get("snapshots")]
    ax.plot([r["replicas"] for r in runs], [r["snapshots"]["hostnames_per_s"] for r in runs], "o-",
            label="hostnames/s (inventories)")  # fmt: skip
    ax.plot([r["replicas"] for r in runs], [r["container_starts"]["events_per_s"] for r in runs], "s-",
            label="container starts/s")  # fmt: skip
    ax.set_xticks([r["replicas"] for r in runs])
    ax.set_xlabel("reconciler replicas (2 CPUs shared with redis and the bench)")
    ax.set_ylabel("per second")
    ax.set_title("Reconciler throughput vs replicas")
    ax.grid(alpha=0.3)
    ax.legend()
    made.append(_save(fig, directory / IMAGES[2]))
    return made


def _single_ms(conv: dict[str, Any], latency: int) -> list[float]:
    runs = (conv.get(f"single_{latency}ms") or {}).get("runs", ())
    return [r["seconds"] * 1000 for r in runs if r["seconds"]]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
