"""The agent's Prometheus metrics (served on FLAREPORT_HEALTH_PORT with /healthz), one counter per failure path."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_SENT = Counter("flareport_agent_events_sent_total", "Events the master accepted, by type.", ["type"])
EVENT_BATCHES = Counter("flareport_agent_event_batches_total", "Event batches sent, by outcome.", ["outcome"])
BUFFER_OVERFLOWS = Counter(
    "flareport_agent_buffer_overflows_total",
    "Times the event buffer filled up while the master was away and was replaced by one inventory snapshot.",
)
BUFFERED_EVENTS = Gauge("flareport_agent_buffered_events", "Events waiting to be sent to the master.")
DOCKER_EVENTS = Counter(
    "flareport_agent_docker_events_total", "Container events read from Docker, by action.", ["action"]
)
DOCKER_EVENTS_REPEATED = Counter(
    "flareport_agent_docker_events_repeated_total",
    "Times the Docker event stream repeated events it had delivered (Podman truncating its events file); each one "
    "makes the agent subscribe again and list the containers afresh.",
)
DOCKER_EVENTS_FIRST = Counter(
    "flareport_agent_docker_events_first_total",
    "Container events by the stream that delivered them first: 'first', or 'second' (Podman only: a second "
    "subscription half of Podman's 250 ms events tick after the first; its copies seen second are dropped).",
    ["stream"],
)
DOCKER_EVENT_STREAMS = Gauge(
    "flareport_agent_docker_event_streams",
    "Subscriptions to the engine's events: 2 on Podman (AGENT_EVENT_STREAMS auto or 2), else 1.",
)
DOCKER_REALIGNED = Counter(
    "flareport_agent_docker_event_stream_realigned_total",
    "Times the second event stream subscribed again because it polled too close to the first.",
)
DOCKER_RECONNECTS = Counter(
    "flareport_agent_docker_reconnects_total", "Times the Docker event stream ended or failed and was reopened."
)
COMMANDS = Counter("flareport_agent_commands_total", "Commands executed, by type and outcome.", ["type", "outcome"])
MASTER_ERRORS = Counter(
    "flareport_agent_master_errors_total",
    "Failed calls to the master, by call and kind (unavailable, rejected, key_rejected).",
    ["call", "kind"],
)
HEARTBEATS = Counter("flareport_agent_heartbeats_total", "Heartbeats the master accepted.")
MASTER_CLEARTEXT = Gauge(
    "flareport_agent_master_url_cleartext",
    "1 when FLAREPORT_MASTER_URL is plain http:// to a host that is not loopback (the agent key and the tunnel "
    "token travel in clear text), else 0.",
)
SWARM_LIST_FAILURES = Counter(
    "flareport_agent_swarm_list_failures_total",
    "Rounds in which listing Swarm services and tasks failed (the services stay as last reported).",
)
SWARM_SERVICES = Gauge("flareport_agent_swarm_services", "Swarm services this manager's agent publishes.")
