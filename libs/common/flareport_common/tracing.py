"""Per-hop latency of one event, engine to Cloudflare: the ``flareport_trace_hop_seconds`` histogram.

Each process observes the hops that end in it, from the ``Trace`` the event (or its job) carries
(``flareport_common.messages.trace``)::

    engine_to_agent          agent       the engine's event time -> the agent received it
    agent_outbox             agent       received -> its batch accepted by the API
    agent_to_api             api         received by the agent -> accepted by the API (outbox, HTTP, checks)
    api_to_reconciler        reconciler  accepted -> read from the events stream by a reconciler
    reconciler_to_commit     reconciler  read -> its job committed to cf-jobs
    commit_to_worker         dns-worker  committed -> read from cf-jobs by a dns-worker
    worker_to_first_call     dns-worker  read -> the job's first Cloudflare call started
    first_call_to_converged  dns-worker  first call -> the job finished (Cloudflare holds the desired state)
    control_plane            dns-worker  received by the agent -> the first call of its jobs: Flareport's own share
    end_to_end               dns-worker  the engine's event time (or the agent's receipt) -> the job finished

The agent and the API observe their hops once per batch (request), for the batch's oldest event: the one that
waited longest, as a job carries the oldest trace of the events it serves; per-event observations would cost the
ingest rate. Hops across processes compare two hosts' clocks: a negative duration (clock skew) is observed as 0,
and the agent's times are bounded by the API (``admitted``), so a wrong or hostile clock can only distort the
histogram, never the pipeline — no decision reads a trace.
"""

from __future__ import annotations

import re
import time

from prometheus_client import Counter, Histogram

from flareport_common.messages.trace import Trace

HOP_SECONDS = Histogram(
    "flareport_trace_hop_seconds",
    "Time an event spends on each hop of its way from the engine to Cloudflare (docs/operations.md, 'Tracing').",
    ["hop"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
)
TRACE_FIELDS_DROPPED = Counter(
    "flareport_trace_fields_dropped_total",
    "Trace fields an agent sent that were out of bounds and dropped, by field.",
    ["field"],
)

# How far ahead of the API's clock an agent's time may be (clock skew between hosts), and how old it may be.
MAX_AHEAD_US = 5_000_000
MAX_AGE_US = 3600 * 1_000_000
_TRACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def now_us() -> int:
    return time.time_ns() // 1000


def observe(hop: str, start_us: int, end_us: int) -> None:
    """Observe one hop when both ends are known; skew between hosts never yields a negative duration."""
    if start_us > 0 and end_us > 0:
        HOP_SECONDS.labels(hop).observe(max(end_us - start_us, 0) / 1_000_000)


def admitted(trace: Trace | None, *, now: int, new_id: str) -> Trace:
    """The trace an agent sent, as the API passes it on: the agent's two times kept only within
    (``now - MAX_AGE_US``, ``now + MAX_AHEAD_US``] and in order, later stages cleared (they are the control plane's
    to set), an id kept only if it is a short plain token; ``api_us`` set to ``now``. Pure."""
    if trace is None:
        return Trace(id=new_id, api_us=now)
    agent = _bounded(trace.agent_us, now, "agent_us")
    engine = _bounded(trace.engine_us, now, "engine_us")
    if engine and agent and engine > agent + MAX_AHEAD_US:
        TRACE_FIELDS_DROPPED.labels("engine_us").inc()
        engine = 0
    trace_id = trace.id
    if not _TRACE_ID.match(trace_id):
        if trace_id:
            TRACE_FIELDS_DROPPED.labels("id").inc()
        trace_id = new_id
    return Trace(id=trace_id, engine_us=engine, agent_us=agent, api_us=now)


def _bounded(value: int, now: int, field: str) -> int:
    if value == 0:
        return 0
    if now - MAX_AGE_US < value <= now + MAX_AHEAD_US:
        return value
    TRACE_FIELDS_DROPPED.labels(field).inc()
    return 0


def oldest(traces: list[Trace]) -> Trace | None:
    """The trace a job built from several events carries: the one accepted first by the API (its wait is the
    longest, so the job's hops measure the worst of the events it serves)."""
    return min((t for t in traces if t.api_us), key=lambda t: t.api_us, default=None)
