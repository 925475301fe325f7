"""One event's trace: when it reached each process on its way from the engine to Cloudflare.

An agent's inventory event carries a ``Trace`` from the agent through the events stream, and the job the
reconciler builds from it carries it on through cf-jobs, each process adding the time it handled it. The
processes that see a hop end observe its duration in ``flareport_trace_hop_seconds`` (``flareport_common.tracing``);
nothing else reads a trace, so a missing or partial one (an older agent, a job planned after a result) only means
fewer observations. Times are integer microseconds since the Unix epoch, 0 for a stage not (yet) reached; the
agent's two are its own clock's and the API bounds them (``tracing.admitted``) before they travel further.
"""

from __future__ import annotations

import msgspec


class Trace(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str = ""  # an agent's id for the event, or the API's when the agent sent none
    engine_us: int = 0  # the engine's own time of the event (Docker/Podman ``timeNano``), as the agent read it
    agent_us: int = 0  # the agent received the engine event
    api_us: int = 0  # the API accepted it, just before adding it to the events stream
    reconciler_us: int = 0  # a reconciler read it from the events stream
    committed_us: int = 0  # the job built from it was committed to cf-jobs
