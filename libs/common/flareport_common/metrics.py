"""Prometheus metrics shared by every service (stream runtime, health), named ``flareport_<area>_<what>_<unit>``.

Metrics live in the process-wide default registry: one process is one service. Labels carry a short stream
name (``events``, ``cf-jobs``, ``agent-commands``), never per-agent names, to keep cardinality bounded.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

STREAM_MESSAGES = Counter(
    "flareport_stream_messages_total",
    "Stream messages finished by a consumer, by outcome (acked, dead_lettered).",
    ["stream", "group", "outcome"],
)
STREAM_RETRIES = Counter(
    "flareport_stream_retries_total",
    "Handler attempts that failed and will be retried (temporary errors and unexpected exceptions).",
    ["stream", "group"],
)
STREAM_DEAD_LETTERS = Counter(
    "flareport_stream_dead_letters_total",
    "Messages sent to the dead-letter stream, by reason.",
    ["stream", "group", "reason"],
)
STREAM_RECLAIMED = Counter(
    "flareport_stream_reclaimed_total",
    "Idle pending messages claimed from other (dead or slow) consumers.",
    ["stream", "group"],
)
STREAM_REDIS_ERRORS = Counter(
    "flareport_stream_redis_errors_total",
    "Redis errors seen by the stream runtime (connection loss, timeouts, missing groups).",
    ["stream", "group"],
)
STREAM_PRODUCED = Counter(
    "flareport_stream_produced_total",
    "Messages added to a stream by this process.",
    ["stream"],
)
STREAM_HANDLER_SECONDS = Histogram(
    "flareport_stream_handler_duration_seconds",
    "Time spent in a message handler, successful or not.",
    ["stream", "group"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STREAM_INFLIGHT = Gauge(
    "flareport_stream_inflight_messages",
    "Messages currently being handled.",
    ["stream", "group"],
)


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Exposition-format body and its content type."""
    return _generate_latest(registry), CONTENT_TYPE_LATEST
