"""Where a single start's time goes: the per-hop histograms (``flareport_trace_hop_seconds``) of every process.

Each process observes the hops of an event's trace that end in it (``flareport_common.tracing``). Around one
isolated start, the difference of each hop's ``_sum`` and ``_count`` over all the stack's processes is that
start's time on the hop, exactly (no bucket interpolation): nothing else carries a trace while it runs.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from typing import Any

import aiohttp

# In the order an event walks them; the last two are totals (the control plane's share, and the whole way).
HOPS = (
    "agent_to_api",
    "api_to_reconciler",
    "reconciler_to_commit",
    "commit_to_worker",
    "worker_to_first_call",
    "first_call_to_converged",
    "control_plane",
    "end_to_end",
)
_SAMPLE = re.compile(r'^flareport_trace_hop_seconds_(sum|count)\{hop="([a-z_]+)"\} (\S+)$', re.M)

Totals = dict[str, tuple[float, float]]  # hop -> (sum of seconds, count), over every process


async def totals(session: aiohttp.ClientSession, urls: list[str]) -> Totals:
    texts = await asyncio.gather(*(_text(session, url) for url in urls))
    found: dict[str, list[float]] = {}
    for text in texts:
        for kind, hop, value in _SAMPLE.findall(text):
            pair = found.setdefault(hop, [0.0, 0.0])
            pair[0 if kind == "sum" else 1] += float(value)
    return {hop: (pair[0], pair[1]) for hop, pair in found.items()}


async def _text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return await response.text()


def per_event_ms(before: Totals, after: Totals) -> dict[str, float | None]:
    """Each hop's mean milliseconds per event observed between the two readings (None: not observed)."""
    out: dict[str, float | None] = {}
    for hop in HOPS:
        s0, c0 = before.get(hop, (0.0, 0.0))
        s1, c1 = after.get(hop, (0.0, 0.0))
        out[hop] = round((s1 - s0) / (c1 - c0) * 1000, 2) if c1 > c0 else None
    return out


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median of each hop over runs (those that observed it)."""
    out: dict[str, float | None] = {}
    for hop in HOPS:
        values = [r["hops_ms"][hop] for r in runs if r.get("hops_ms", {}).get(hop) is not None]
        out[hop] = round(statistics.median(values), 2) if values else None
    return out
