"""The API's own Prometheus metrics (``flareport_api_*``) and the middleware that records every request.

Routes are labelled by their template (``/api/v1/agents/{agent_id}/events``), never the concrete path, so
1,000 agents make one series, not 1,000.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("flareport_api_requests_total", "HTTP requests answered, by route and status.", ["route", "status"])
REQUEST_SECONDS = Histogram(
    "flareport_api_request_duration_seconds",
    "Time to answer an HTTP request (long-polls included: they show up as their wait).",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LONGPOLLS_OPEN = Gauge("flareport_api_longpolls_open", "Command long-polls currently waiting.")
AUTH_FAILURES = Counter("flareport_api_auth_failures_total", "Failed authentications, by reason.", ["reason"])
EVENTS = Counter("flareport_api_agent_events_total", "Agent events received, by outcome.", ["outcome"])
HEARTBEATS_DROPPED = Counter(
    "flareport_api_heartbeats_dropped_total", "Heartbeats answered but not passed on (agent over its rate, or backlog)."
)
COMMANDS_DELIVERED = Counter("flareport_api_commands_delivered_total", "Commands handed to agents, by kind.", ["kind"])
NOTIFICATIONS = Counter("flareport_api_command_notifications_total", "Command notifications received (pub/sub).")
NOTIFY_ERRORS = Counter("flareport_api_notification_errors_total", "Pub/sub subscription failures (re-subscribed).")
SERVER_ERRORS = Counter("flareport_api_server_errors_total", "Requests that failed with a 5xx, by route.", ["route"])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    match = request.match_info
    resource = match.route.resource
    if isinstance(match, MatchInfoError) or resource is None:  # no route (404) or wrong method (405)
        return "unmatched"
    return resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        label = route_label(request)
        REQUESTS.labels(label, str(status)).inc()
        REQUEST_SECONDS.labels(label).observe(time.perf_counter() - started)
        if status >= 500:
            SERVER_ERRORS.labels(label).inc()
