"""Prometheus metrics of the dns-worker (``flareport_cloudflare_*`` for calls, ``flareport_dnsworker_*`` for jobs).

Endpoint labels are Cloudflare's path templates (``POST /zones/{zone_id}/dns_records/batch``), never ids, so
cardinality stays bounded however many zones and tunnels there are.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLS = Counter(
    "flareport_cloudflare_calls_total",
    "Cloudflare API calls by endpoint template and outcome (ok, rate_limited, server_error, timeout, "
    "connection_error, client_error).",
    ["endpoint", "outcome"],
)
RATE_LIMIT_WAITS = Counter(
    "flareport_cloudflare_rate_limit_waits_total",
    "Calls that had to wait for the shared token bucket or a 429 pause.",
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "flareport_cloudflare_rate_limit_wait_seconds_total",
    "Time spent waiting for the shared token bucket or a 429 pause.",
)
RATE_LIMITED = Counter(
    "flareport_cloudflare_rate_limited_total",
    "429 answers from Cloudflare (each pauses every replica until Retry-After).",
)
CLOUDFLARE_REMAINING = Gauge(
    "flareport_cloudflare_rate_limit_remaining",
    "Requests left in Cloudflare's rate-limit window as its last answer to this process reported them (the "
    "Ratelimit header; it counts every consumer of the user's budget: the dashboard and other tools too).",
)
JOB_SECONDS = Histogram(
    "flareport_dnsworker_job_duration_seconds",
    "Time from taking a job to publishing its result, by job type.",
    ["job_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
JOBS = Counter(
    "flareport_dnsworker_jobs_total",
    "Jobs finished, by type and outcome (applied, unchanged, skipped, failed, lease_busy).",
    ["job_type", "outcome"],
)
APP_CREATE_REFUSED = Counter(
    "flareport_dnsworker_access_create_refused_total",
    "Access app creates Cloudflare refused because the domain already had an app (then looked up: adopted if ours, "
    "a conflict if foreign).",
)
CONFLICTS = Counter(
    "flareport_dnsworker_conflicts_total",
    "Foreign DNS records, ingress rules or Access apps on a wanted name, by kind (dns, ingress, access).",
    ["kind"],
)
ADOPTED = Counter(
    "flareport_dnsworker_adopted_total",
    "Objects made outside Flareport (e.g. by DockFlare) taken over in place, by kind (dns, access).",
    ["kind"],
)
DRIFT_REPAIRS = Counter(
    "flareport_dnsworker_drift_repairs_total",
    "verify_target runs that found Cloudflare changed behind our back and repaired it, by target kind.",
    ["kind"],
)
BATCH_SIZE = Histogram(
    "flareport_dnsworker_dns_batch_operations",
    "Operations per dns_records/batch call.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 3500),
)
BATCH_FALLBACKS = Counter(
    "flareport_dnsworker_dns_batch_fallbacks_total",
    "Batches Cloudflare refused, re-done as single calls.",
)
LEFT_OUT = Counter(
    "flareport_dnsworker_dns_records_left_out_total",
    "Desired DNS records left out of a zone's batch, by reason: invalid_name (the name check), zone (not in the "
    "job's zone), refused (Cloudflare refused the same write before).",
    ["reason"],
)
TUNNEL_LISTINGS = Counter(
    "flareport_dnsworker_tunnel_listings_total",
    "Listings of the account's tunnels for their read model, by outcome: ok, failed (Cloudflare refused or did not "
    "answer; the last good listing is kept).",
    ["outcome"],
)
CONFIG_CHANGED_ELSEWHERE = Counter(
    "flareport_dnsworker_tunnel_config_changed_elsewhere_total",
    "Tunnel configuration PUTs whose answer showed another write between the copy they were planned from and "
    "them (the version did not go up by exactly one): that write was replaced. Each is logged as "
    "tunnels.config_changed_elsewhere.",
)
