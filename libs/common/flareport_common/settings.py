"""Settings of every service: parsed once from the environment into frozen structs and passed down.

Names, DockFlare aliases and defaults are documented in docs/configuration.md. ``load(...)`` raises
``SettingsError`` with one line naming the variable; ``load_or_exit`` turns that into a clean process exit for the
entry points.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

from flareport_common.agentenv import agent_options
from flareport_common.env import Env, validate_image
from flareport_common.errors import SettingsError
from flareport_common.keys import DEFAULT_PREFIX
from flareport_common.policy import ORIGIN_ALLOW_ENV, kinds_hint, unknown_kinds
from flareport_common.redissettings import RedisNodes, load_redis_nodes

DEFAULT_CLOUDFLARED_IMAGE = "cloudflare/cloudflared:2025.9.0"
DEFAULT_CLOUDFLARED_NETWORK = "cloudflare-net"
DEFAULT_CLOUDFLARE_API_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_LOG_LEVEL = "info"
# The event loops a process may run on (``FLAREPORT_EVENT_LOOP``; ``runtime.loop_factory``).
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
DEFAULT_LOG_FORMAT = "auto"  # console when attached to a terminal, JSON otherwise
_KEY_ID = re.compile(r"key_[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class CommonSettings:
    redis_url: str = field(default="redis://127.0.0.1:6379", repr=False)  # may carry the Redis password
    redis_db_index: int | None = None  # None: the URL's database
    key_prefix: str = DEFAULT_PREFIX
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT  # "json", "console" or "auto"
    tz: str | None = None
    # Sentinel, and the data nodes' credentials and TLS beyond REDIS_URL (flareport_common.redissettings).
    redis_nodes: RedisNodes = field(default_factory=RedisNodes)
    event_loop: str = "auto"  # uvloop where installed (``runtime.loop_factory``), or ``uvloop``, ``asyncio``


@dataclass(frozen=True, slots=True)
class AgentQuotas:
    """What one agent may send and hold (docs/security.md, "Per-agent quotas"). An agent over a limit gets a 429
    or 413 naming it; every other agent is unaffected. Defaults leave room for a large host (thousands of
    labelled containers) while bounding what a stolen key can make the control plane store or do."""

    events_per_second: float = 200.0  # sustained rate of events (token bucket) ...
    events_burst: int = 5000  # ... and the bucket's size: a restart's backlog goes through at once
    containers: int = 10_000  # labelled containers in one inventory
    rules_per_container: int = 100
    hostnames: int = 20_000  # distinct hostnames across the agent's containers
    label_errors_per_container: int = 50
    label_error_bytes: int = 1024  # one label error's label plus reason
    longpolls: int = 2  # command long-polls open at once per key
    # The shared events stream: above this many entries not yet handled by the reconciler, events get 429 and
    # Retry-After; nothing accepted is ever trimmed before it was handled. It also bounds how long an agent's event
    # waits behind a flood of others' (bench/event_flood.py: 10,000 entries are a few seconds of reconciler work).
    events_backlog: int = 10_000


DEFAULT_QUOTAS = AgentQuotas()


@dataclass(frozen=True, slots=True)
class ApiSettings:
    common: CommonSettings
    master_api_key: str = field(repr=False)
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    # An agent's event batch may carry its whole inventory (about 400 bytes per labelled container), so it gets a
    # limit of its own: 16 MiB is some 40,000 containers, more than one engine runs.
    max_events_body_bytes: int = 16 * 1_048_576
    # Long-poll: a periodic re-check of every waiting agent, so a missed pub/sub notification costs at most this.
    # Notifications are lost only when the subscription breaks, and every waiter looks once it is back, so this is
    # the bound for a loss nobody saw, and an idle API pays it (one XINFO round trip) every interval.
    command_poll_seconds: float = 10.0
    # A delivered command not acknowledged within this time is delivered again.
    command_redeliver_seconds: float = 60.0
    max_wait_seconds: float = 60.0
    # Failed authentications allowed per client address within the window before answering 429.
    auth_failure_limit: int = 20
    auth_failure_window_seconds: float = 60.0
    # Web UI (flareport_api.ui): the admin login, sessions, login brake and live updates.
    admin_user: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    admin_password_hash: str | None = field(default=None, repr=False)
    # Where a generated admin password is written (mode 0600); None: default_admin_password_file().
    admin_password_file: str | None = None
    ui_session_hours: float = 12.0
    # A session ends this long after its sign-in, however active it is (never shorter than ui_session_hours).
    ui_session_max_hours: float = 24.0
    ui_login_limit: int = 5
    ui_login_window_seconds: float = 300.0
    ui_secure_cookie: str = "auto"  # "auto" (Secure when the request came over https), "always", "never"
    ui_events_seconds: float = 2.0
    # Optional OpenID Connect single sign-on for the web UI (see docs/web-ui.md).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_allowed_emails: tuple[str, ...] = ()
    oidc_allowed_domains: tuple[str, ...] = ()
    oidc_redirect_url: str | None = None
    ui_password_login: bool = True
    # Agent keys carry an HMAC of their id under this secret, so a key whose record Redis lost (a total loss of
    # data) can be recognised and restored without the admin issuing new keys; see docs/security.md.
    agent_key_secret: str = field(default="", repr=False)
    agent_key_recovery: bool = True
    # After Redis lost its data, keys are restored from their proof for this long only (docs/security.md) ...
    agent_key_recovery_window_seconds: float = 3600.0
    # ... and at most this many a minute across replicas (more: 429 with Retry-After; the agents retry).
    agent_key_restores_per_minute: int = 600
    # Key ids refused whatever Redis holds: a revocation kept in configuration outlives a total loss of Redis data,
    # after which a key revoked only in Redis would prove itself and be restored.
    revoked_agent_keys: frozenset[str] = frozenset()
    quotas: AgentQuotas = AgentQuotas()
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or CIDR networks). None by
    # default: a header any client can write must not choose the address a brake counts.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    common: CommonSettings
    grace_period_seconds: int = 600
    agent_offline_seconds: int = 60
    drift_check_seconds: int = 600
    health_port: int = 9101
    # How long a stream message may sit unacknowledged with a dead replica before another takes it over.
    claim_idle_seconds: float = 30.0
    # How often background work runs (grace deletions, offline detection, leftovers of crashed replicas).
    sweep_interval_seconds: float = 2.0
    # A Cloudflare job without a result for this long is presumed lost and its target planned again.
    job_timeout_seconds: int = 600
    # Coalescing (docs/reconciler.md, "Coalescing"): changes reaching a target written less than a window ago wait
    # for the window's end and go out as one job. The window's base, its bound (0: every change planned at once,
    # no window), and the size of a change from which it waits a window even on a quiet target (more is coming).
    coalesce_window_ms: int = 300
    coalesce_max_window_ms: int = 5000
    coalesce_burst_hostnames: int = 50
    # After the API recovered an agent key (Redis had lost its data), owned DNS records and ingress rules that no
    # known rule lists are kept this long, so agents that have not reported again yet lose nothing.
    recovery_hold_seconds: int = 600
    # What every agent's rules may publish beyond the default policy (docs/security.md); an admin widens it per
    # agent too. Origin kinds are those of ``flareport_common.policy.ORIGIN_KINDS``.
    agent_origin_allow: frozenset[str] = frozenset()
    agent_allow_wildcard: bool = False
    agent_allow_apex: bool = False
    # An agent's containers known at once and distinct hostnames claimed, across all its events (the API checks
    # one request; these bound what a stream of requests adds up to). Same variables as the API's quotas.
    agent_max_containers: int = DEFAULT_QUOTAS.containers
    agent_max_hostnames: int = DEFAULT_QUOTAS.hostnames
    # The Cloudflare account owner's email for access.policy=authenticate (group authenticated-default); unset:
    # the one the dns-worker finds in the account's members, as DockFlare does.
    access_owner_email: str | None = None


@dataclass(frozen=True, slots=True)
class CloudflareSettings:
    api_token: str = field(repr=False)
    account_id: str
    default_zone_id: str | None = None
    api_base_url: str = DEFAULT_CLOUDFLARE_API_BASE_URL
    rate_limit_requests: int = 1200
    rate_limit_window_seconds: int = 300
    # Cloudflare also refuses more than 200 requests per second from one IP address (0: no such cap).
    rate_limit_per_second: int = 200


@dataclass(frozen=True, slots=True)
class DnsWorkerSettings:
    common: CommonSettings
    cloudflare: CloudflareSettings
    owner_id: str = "flareport"
    health_port: int = 9102
    # Operations per dns_records/batch call (Cloudflare Free allows 200, paid plans 3,500).
    dns_batch_size: int = 200
    request_timeout_seconds: float = 30.0
    # Single-flight lease per Cloudflare target; renewed every third of it while a job runs.
    target_lease_ms: int = 15_000
    zone_refresh_seconds: int = 300
    # Attempts of one Cloudflare call on 5xx/timeouts/connection errors before the job is retried later.
    max_call_attempts: int = 5
    access_tag: str = "flareport"
    # How long a job may sit unacknowledged with a dead replica before another takes it over.
    claim_idle_seconds: float = 30.0
    # How long (from the job) a tunnel deletion waits for the tunnel's connections to drain before it cascades.
    tunnel_delete_deadline_seconds: float = 600.0
    # The Cloudflare account owner's email for the system group authenticated-default; None: found in the account.
    access_owner_email: str | None = None
    # Take over, in place, Access apps DockFlare made for wanted hostnames (untagged, named "DockFlare-<host>").
    adopt_dockflare_access: bool = False
    # How often the account's tunnels and their connectors are listed into their read model (the tunnels page).
    tunnel_list_seconds: int = 60
    # How long after a real read of a tunnel's configuration the worker may PUT from its cached copy without
    # reading again. 0 (read before every PUT) by default: within a window, an edit made in the dashboard since
    # that read is replaced by our PUT (seen, not undone): docs/dns-worker.md, "Trust window".
    tunnel_config_trust_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    master_url: str
    api_key: str = field(repr=False)
    docker_host: str | None = None  # None: the Docker SDK's default
    cloudflared_image: str = DEFAULT_CLOUDFLARED_IMAGE
    data_dir: str = "/app/data"
    label_prefix: str | None = None
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    tz: str | None = None
    health_port: int = 9103
    # A Cloudflare Access service token sent on every call to the master (docs/agent.md, "Behind Cloudflare Access").
    access_client_id: str | None = None
    access_client_secret: str = field(default="", repr=False)
    cloudflared_network: str = DEFAULT_CLOUDFLARED_NETWORK
    cloudflared_metrics_port: int | None = None  # None: cloudflared's own default (loopback inside its container)
    # cloudflared runs elsewhere, run by the operator: the agent never starts or stops one (docs/agent.md).
    external_cloudflared: bool = False
    # Subscriptions to the engine's events: ``auto`` (2 on Podman, half its events tick apart; else 1), ``1``, ``2``.
    event_streams: str = "auto"
    event_loop: str = "auto"  # as CommonSettings.event_loop


def _defaults(settings: type[Any]) -> dict[str, Any]:
    """Each field's default, by name. A default is written once, on its struct's field: the loaders read their
    fallbacks from here, and tests or tools that build a struct directly get the same values."""
    return {item.name: item.default for item in fields(settings) if item.default is not MISSING}


_COMMON = _defaults(CommonSettings)
_API = _defaults(ApiSettings)
_RECONCILER = _defaults(ReconcilerSettings)
_CLOUDFLARE = _defaults(CloudflareSettings)
_DNS_WORKER = _defaults(DnsWorkerSettings)
_AGENT = _defaults(AgentSettings)


def _log(env: Env) -> tuple[str, str]:
    level = env.choice(
        "LOG_LEVEL", default=DEFAULT_LOG_LEVEL, choices=("debug", "info", "warning", "error", "critical")
    )
    fmt = env.choice("LOG_FORMAT", default=DEFAULT_LOG_FORMAT, choices=("auto", "json", "console"))
    return level, fmt


def _event_loop(env: Env) -> str:
    kind = env.choice("FLAREPORT_EVENT_LOOP", default=_COMMON["event_loop"], choices=EVENT_LOOPS)
    # Asked for by name and missing: a setting this machine cannot honour stops the process as any bad one does,
    # before it starts anything (``auto`` falls back to asyncio's loop instead).
    if kind == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise SettingsError("FLAREPORT_EVENT_LOOP: uvloop is not installed")
    return kind


def load_logging(environ: Mapping[str, str]) -> tuple[str, str]:
    """``LOG_LEVEL`` and ``LOG_FORMAT`` alone, for a process with no other settings here (the socket guard)."""
    return _log(Env(environ))


def load_common(env: Env) -> CommonSettings:
    level, fmt = _log(env)
    redis_url = env.url("REDIS_URL", schemes=("redis", "rediss", "unix"), default=_COMMON["redis_url"])
    return CommonSettings(
        redis_url=redis_url,
        redis_db_index=env.optional_int("REDIS_DB_INDEX", minimum=0, maximum=15),
        key_prefix=env.text("FLAREPORT_KEY_PREFIX", default=_COMMON["key_prefix"]),
        log_level=level,
        log_format=fmt,
        tz=env.optional("TZ"),
        redis_nodes=load_redis_nodes(env, redis_url),
        event_loop=_event_loop(env),
    )


def load_api(environ: Mapping[str, str]) -> ApiSettings:
    env = Env(environ)
    key = env.text("MASTER_API_KEY", required=True)
    if len(key) < 16:
        raise SettingsError("MASTER_API_KEY: must be at least 16 characters")
    return ApiSettings(
        common=load_common(env),
        host=env.text("FLAREPORT_API_HOST", default=_API["host"]),
        port=env.integer("FLAREPORT_API_PORT", default=_API["port"], minimum=0, maximum=65535),
        master_api_key=key,
        max_body_bytes=env.integer("FLAREPORT_API_MAX_BODY_BYTES", default=_API["max_body_bytes"], minimum=1024),
        max_events_body_bytes=env.integer(
            "FLAREPORT_API_MAX_EVENTS_BODY_BYTES", default=_API["max_events_body_bytes"], minimum=1024
        ),
        command_poll_seconds=env.number(
            "FLAREPORT_API_COMMAND_POLL_SECONDS", default=_API["command_poll_seconds"], minimum=0.05
        ),
        command_redeliver_seconds=env.number(
            "FLAREPORT_API_COMMAND_REDELIVER_SECONDS", default=_API["command_redeliver_seconds"], minimum=1.0
        ),
        max_wait_seconds=env.number("FLAREPORT_API_MAX_WAIT_SECONDS", default=_API["max_wait_seconds"], minimum=0.0),
        auth_failure_limit=env.integer(
            "FLAREPORT_API_AUTH_FAILURE_LIMIT", default=_API["auth_failure_limit"], minimum=1
        ),
        auth_failure_window_seconds=env.number(
            "FLAREPORT_API_AUTH_FAILURE_WINDOW_SECONDS", default=_API["auth_failure_window_seconds"], minimum=1.0
        ),
        admin_user=env.text("FLAREPORT_ADMIN_USER", default=_API["admin_user"]),
        admin_password=env.optional("FLAREPORT_ADMIN_PASSWORD"),
        admin_password_hash=_argon2_hash(env.optional("FLAREPORT_ADMIN_PASSWORD_HASH")),
        admin_password_file=_admin_password_file(env, environ),
        ui_session_hours=env.number("FLAREPORT_UI_SESSION_HOURS", default=_API["ui_session_hours"], minimum=0.01),
        ui_session_max_hours=_session_max_hours(env),
        ui_login_limit=env.integer("FLAREPORT_UI_LOGIN_LIMIT", default=_API["ui_login_limit"], minimum=1),
        ui_login_window_seconds=env.number(
            "FLAREPORT_UI_LOGIN_WINDOW_SECONDS", default=_API["ui_login_window_seconds"], minimum=1.0
        ),
        ui_secure_cookie=env.choice(
            "FLAREPORT_UI_SECURE_COOKIE", default=_API["ui_secure_cookie"], choices=("auto", "always", "never")
        ),
        ui_events_seconds=env.number("FLAREPORT_UI_EVENTS_SECONDS", default=_API["ui_events_seconds"], minimum=0.1),
        agent_key_secret=_agent_key_secret(env, key),
        agent_key_recovery=env.flag("FLAREPORT_AGENT_KEY_RECOVERY", default=_API["agent_key_recovery"]),
        agent_key_recovery_window_seconds=env.number(
            "FLAREPORT_AGENT_KEY_RECOVERY_WINDOW_SECONDS",
            default=_API["agent_key_recovery_window_seconds"],
            minimum=0.0,
        ),
        agent_key_restores_per_minute=env.integer(
            "FLAREPORT_AGENT_KEY_RESTORES_PER_MINUTE", default=_API["agent_key_restores_per_minute"], minimum=1
        ),
        revoked_agent_keys=_key_ids(env, "FLAREPORT_REVOKED_AGENT_KEYS"),
        quotas=_load_quotas(env),
        trusted_proxies=_networks(env, "FLAREPORT_TRUSTED_PROXIES"),
        **_load_oidc(env),
    )


def _email(env: Env, name: str) -> str | None:
    value = env.optional(name)
    if value is None:
        return None
    email = value.strip().lower()
    if not re.fullmatch(r"[^@\s]{1,64}@[a-z0-9.-]{1,253}", email):
        raise SettingsError(f"{name}: expected an email address, got {value!r}")
    return email


def _networks(env: Env, name: str) -> tuple[str, ...]:
    """Addresses or CIDR networks, separated by commas or spaces (each checked, normalised: ``10.0.0.0/8``)."""
    found: list[str] = []
    for item in (env.optional(name) or "").replace(",", " ").split():
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR network") from None
    return tuple(found)


def _load_quotas(env: Env) -> AgentQuotas:
    d = AgentQuotas()
    return AgentQuotas(
        events_per_second=env.number("FLAREPORT_AGENT_EVENTS_PER_SECOND", default=d.events_per_second, minimum=0.1),
        events_burst=env.integer("FLAREPORT_AGENT_EVENTS_BURST", default=d.events_burst, minimum=1),
        containers=env.integer("FLAREPORT_AGENT_MAX_CONTAINERS", default=d.containers, minimum=1),
        rules_per_container=env.integer(
            "FLAREPORT_AGENT_MAX_RULES_PER_CONTAINER", default=d.rules_per_container, minimum=1
        ),
        hostnames=env.integer("FLAREPORT_AGENT_MAX_HOSTNAMES", default=d.hostnames, minimum=1),
        label_errors_per_container=env.integer(
            "FLAREPORT_AGENT_MAX_LABEL_ERRORS", default=d.label_errors_per_container, minimum=1
        ),
        label_error_bytes=env.integer("FLAREPORT_AGENT_MAX_LABEL_ERROR_BYTES", default=d.label_error_bytes, minimum=64),
        longpolls=env.integer("FLAREPORT_AGENT_MAX_LONGPOLLS", default=d.longpolls, minimum=1, maximum=16),
        events_backlog=env.integer("FLAREPORT_EVENTS_BACKLOG_LIMIT", default=d.events_backlog, minimum=100),
    )


def derived_agent_key_secret(master_key: str) -> str:
    """The agent-key secret when FLAREPORT_AGENT_KEY_SECRET is not set. Derived rather than random: every API
    replica must agree on it and it must survive the loss of Redis, which the master key (configuration, not data)
    does. A separate secret lets the master key rotate alone."""
    return hmac.new(master_key.encode(), b"flareport agent key secret", hashlib.sha256).hexdigest()


def _agent_key_secret(env: Env, master_key: str) -> str:
    secret = env.optional("FLAREPORT_AGENT_KEY_SECRET")
    if secret is None:
        return derived_agent_key_secret(master_key)
    if len(secret) < 32:
        raise SettingsError("FLAREPORT_AGENT_KEY_SECRET: must be at least 32 characters")
    return secret


def _words(env: Env, name: str) -> tuple[str, ...]:
    return tuple(w.strip().lower() for w in (env.optional(name) or "").replace(",", " ").split() if w.strip())


def _key_ids(env: Env, name: str) -> frozenset[str]:
    ids = _words(env, name)
    for key_id in ids:
        if not _KEY_ID.fullmatch(key_id):
            raise SettingsError(f"{name}: {key_id!r} is not a key id (key_ and 16 hex digits, as the keys page shows)")
    return frozenset(ids)


def _load_oidc(env: Env) -> dict[str, Any]:
    issuer = env.optional("FLAREPORT_OIDC_ISSUER")
    password_login = env.flag("FLAREPORT_UI_PASSWORD_LOGIN", default=_API["ui_password_login"])
    if issuer is None:
        if not password_login:
            raise SettingsError("FLAREPORT_UI_PASSWORD_LOGIN: can be false only when FLAREPORT_OIDC_ISSUER is set")
        return {}
    issuer = env.url("FLAREPORT_OIDC_ISSUER", schemes=("https", "http")).rstrip("/")
    emails = _words(env, "FLAREPORT_OIDC_ALLOWED_EMAILS")
    domains = tuple(d.lstrip("@") for d in _words(env, "FLAREPORT_OIDC_ALLOWED_DOMAINS"))
    if not emails and not domains:
        # Without an allow-list every account at the provider (all of Google, say) would be the admin.
        raise SettingsError("FLAREPORT_OIDC_ALLOWED_EMAILS or FLAREPORT_OIDC_ALLOWED_DOMAINS: required with OIDC")
    if env.optional("FLAREPORT_OIDC_REDIRECT_URL") is None:
        # Never derived from the request: a Host header is whatever the client sends.
        raise SettingsError(
            "FLAREPORT_OIDC_REDIRECT_URL: required with OIDC (the callback URL registered at the provider, "
            "https://<your-host>/ui/login/oidc/callback)"
        )
    return {
        "oidc_issuer": issuer,
        "oidc_client_id": env.text("FLAREPORT_OIDC_CLIENT_ID", required=True),
        "oidc_client_secret": env.text("FLAREPORT_OIDC_CLIENT_SECRET", required=True),
        "oidc_allowed_emails": emails,
        "oidc_allowed_domains": domains,
        "oidc_redirect_url": env.url("FLAREPORT_OIDC_REDIRECT_URL", schemes=("https", "http")),
        "ui_password_login": password_login,
    }


def _session_max_hours(env: Env) -> float:
    idle = env.number("FLAREPORT_UI_SESSION_HOURS", default=_API["ui_session_hours"], minimum=0.01)
    if env.optional("FLAREPORT_UI_SESSION_MAX_HOURS") is None:
        longest: float = _API["ui_session_max_hours"]
        return max(longest, idle)
    hours = env.number("FLAREPORT_UI_SESSION_MAX_HOURS", default=_API["ui_session_max_hours"], minimum=0.01)
    if hours < idle:
        raise SettingsError(
            f"FLAREPORT_UI_SESSION_MAX_HOURS: must be at least FLAREPORT_UI_SESSION_HOURS ({idle:g}), got {hours:g}"
        )
    return hours


def default_admin_password_file(environ: Mapping[str, str]) -> str:
    """``$XDG_STATE_HOME/flareport/admin-password``, else ``~/.local/state/flareport/admin-password``."""
    state = (environ.get("XDG_STATE_HOME") or "").strip()
    if not state or not os.path.isabs(state):  # the XDG spec says to ignore a relative path
        home = (environ.get("HOME") or "").strip() or os.path.expanduser("~")
        state = os.path.join(home, ".local", "state")
    return os.path.join(state, "flareport", "admin-password")


def _admin_password_file(env: Env, environ: Mapping[str, str]) -> str:
    path = env.optional("FLAREPORT_ADMIN_PASSWORD_FILE")
    if path is None:
        return default_admin_password_file(environ)
    if not os.path.isabs(path):
        raise SettingsError(f"FLAREPORT_ADMIN_PASSWORD_FILE: must be an absolute path, got {path!r}")
    return path


def _argon2_hash(value: str | None) -> str | None:
    if value is not None and not value.startswith("$argon2"):
        raise SettingsError("FLAREPORT_ADMIN_PASSWORD_HASH: must be an argon2 hash ($argon2id$...)")
    return value


def load_reconciler(environ: Mapping[str, str]) -> ReconcilerSettings:
    env = Env(environ)
    return ReconcilerSettings(
        common=load_common(env),
        grace_period_seconds=env.integer(
            "GRACE_PERIOD_SECONDS", default=_RECONCILER["grace_period_seconds"], minimum=0
        ),
        agent_offline_seconds=env.integer(
            "AGENT_OFFLINE_SECONDS", default=_RECONCILER["agent_offline_seconds"], minimum=5
        ),
        drift_check_seconds=env.integer("DRIFT_CHECK_SECONDS", default=_RECONCILER["drift_check_seconds"], minimum=10),
        health_port=env.integer("FLAREPORT_HEALTH_PORT", default=_RECONCILER["health_port"], minimum=0, maximum=65535),
        claim_idle_seconds=env.number(
            "FLAREPORT_CLAIM_IDLE_SECONDS", default=_RECONCILER["claim_idle_seconds"], minimum=0.1
        ),
        sweep_interval_seconds=env.number(
            "FLAREPORT_SWEEP_INTERVAL_SECONDS", default=_RECONCILER["sweep_interval_seconds"], minimum=0.05
        ),
        job_timeout_seconds=env.integer(
            "FLAREPORT_JOB_TIMEOUT_SECONDS", default=_RECONCILER["job_timeout_seconds"], minimum=1
        ),
        recovery_hold_seconds=env.integer(
            "FLAREPORT_RECOVERY_HOLD_SECONDS", default=_RECONCILER["recovery_hold_seconds"], minimum=0
        ),
        coalesce_window_ms=env.integer(
            "FLAREPORT_COALESCE_WINDOW_MS", default=_RECONCILER["coalesce_window_ms"], minimum=0, maximum=60_000
        ),
        coalesce_max_window_ms=env.integer(
            "FLAREPORT_COALESCE_MAX_WINDOW_MS", default=_RECONCILER["coalesce_max_window_ms"], minimum=0, maximum=60_000
        ),
        coalesce_burst_hostnames=env.integer(
            "FLAREPORT_COALESCE_BURST_HOSTNAMES", default=_RECONCILER["coalesce_burst_hostnames"], minimum=1
        ),
        agent_origin_allow=_origin_kinds(env, ORIGIN_ALLOW_ENV),
        agent_allow_wildcard=env.flag("FLAREPORT_AGENT_ALLOW_WILDCARD", default=_RECONCILER["agent_allow_wildcard"]),
        agent_allow_apex=env.flag("FLAREPORT_AGENT_ALLOW_APEX", default=_RECONCILER["agent_allow_apex"]),
        access_owner_email=_email(env, "FLAREPORT_ACCESS_OWNER_EMAIL"),
        agent_max_containers=env.integer(
            "FLAREPORT_AGENT_MAX_CONTAINERS", default=DEFAULT_QUOTAS.containers, minimum=1
        ),
        agent_max_hostnames=env.integer("FLAREPORT_AGENT_MAX_HOSTNAMES", default=DEFAULT_QUOTAS.hostnames, minimum=1),
    )


def _origin_kinds(env: Env, name: str) -> frozenset[str]:
    kinds = _words(env, name)
    unknown = unknown_kinds(kinds)
    if unknown:
        raise SettingsError(f"{name}: unknown origin kind {unknown[0]!r} ({kinds_hint()})")
    return frozenset(kinds)


def load_cloudflare(env: Env) -> CloudflareSettings:
    return CloudflareSettings(
        api_token=env.text("CLOUDFLARE_API_TOKEN", "CF_API_TOKEN", required=True),
        account_id=env.text("CLOUDFLARE_ACCOUNT_ID", "CF_ACCOUNT_ID", required=True),
        default_zone_id=env.optional("CLOUDFLARE_ZONE_ID", "CF_ZONE_ID"),
        api_base_url=env.url("CLOUDFLARE_API_BASE_URL", schemes=("http", "https"), default=_CLOUDFLARE["api_base_url"]),
        rate_limit_requests=env.integer(
            "CLOUDFLARE_RATE_LIMIT_REQUESTS", default=_CLOUDFLARE["rate_limit_requests"], minimum=1
        ),
        rate_limit_window_seconds=env.integer(
            "CLOUDFLARE_RATE_LIMIT_WINDOW_SECONDS", default=_CLOUDFLARE["rate_limit_window_seconds"], minimum=1
        ),
        rate_limit_per_second=env.integer(
            "CLOUDFLARE_RATE_LIMIT_PER_SECOND", default=_CLOUDFLARE["rate_limit_per_second"], minimum=0
        ),
    )


def load_dns_worker(environ: Mapping[str, str]) -> DnsWorkerSettings:
    env = Env(environ)
    return DnsWorkerSettings(
        common=load_common(env),
        cloudflare=load_cloudflare(env),
        owner_id=_owner_id(env),
        health_port=env.integer("FLAREPORT_HEALTH_PORT", default=_DNS_WORKER["health_port"], minimum=0, maximum=65535),
        dns_batch_size=env.integer(
            "CLOUDFLARE_DNS_BATCH_SIZE", default=_DNS_WORKER["dns_batch_size"], minimum=1, maximum=3500
        ),
        request_timeout_seconds=env.number(
            "CLOUDFLARE_REQUEST_TIMEOUT_SECONDS", default=_DNS_WORKER["request_timeout_seconds"], minimum=1.0
        ),
        target_lease_ms=env.integer("FLAREPORT_TARGET_LEASE_MS", default=_DNS_WORKER["target_lease_ms"], minimum=1000),
        zone_refresh_seconds=env.integer(
            "CLOUDFLARE_ZONE_REFRESH_SECONDS", default=_DNS_WORKER["zone_refresh_seconds"], minimum=10
        ),
        max_call_attempts=env.integer(
            "CLOUDFLARE_MAX_CALL_ATTEMPTS", default=_DNS_WORKER["max_call_attempts"], minimum=1, maximum=20
        ),
        access_tag=env.text("FLAREPORT_ACCESS_TAG", default=_DNS_WORKER["access_tag"]),
        claim_idle_seconds=env.number(
            "FLAREPORT_CLAIM_IDLE_SECONDS", default=_DNS_WORKER["claim_idle_seconds"], minimum=0.1
        ),
        tunnel_delete_deadline_seconds=env.number(
            "CLOUDFLARE_TUNNEL_DELETE_DEADLINE_SECONDS",
            default=_DNS_WORKER["tunnel_delete_deadline_seconds"],
            minimum=0.0,
        ),
        access_owner_email=_email(env, "FLAREPORT_ACCESS_OWNER_EMAIL"),
        adopt_dockflare_access=env.flag(
            "FLAREPORT_ADOPT_DOCKFLARE_ACCESS", default=_DNS_WORKER["adopt_dockflare_access"]
        ),
        tunnel_list_seconds=env.integer(
            "CLOUDFLARE_TUNNEL_LIST_SECONDS", default=_DNS_WORKER["tunnel_list_seconds"], minimum=10
        ),
        tunnel_config_trust_seconds=env.number(
            "CLOUDFLARE_TUNNEL_CONFIG_TRUST_SECONDS", default=_DNS_WORKER["tunnel_config_trust_seconds"], minimum=0.0
        ),
    )


def _owner_id(env: Env) -> str:
    # The owner id goes into a DNS comment "managed-by=flareport owner=<id>": Cloudflare Free allows 100 characters.
    owner = env.text("FLAREPORT_OWNER_ID", default=_DNS_WORKER["owner_id"])
    if len(owner) > 60 or not owner.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SettingsError("FLAREPORT_OWNER_ID: must be 1-60 letters, digits, '-', '_' or '.'")
    return owner


def load_agent(environ: Mapping[str, str]) -> AgentSettings:
    env = Env(environ)
    level, fmt = _log(env)
    image = env.text("CLOUDFLARED_IMAGE", default=_AGENT["cloudflared_image"])
    name = (env.raw("CLOUDFLARED_IMAGE") or ("CLOUDFLARED_IMAGE", image))[0]
    return AgentSettings(
        master_url=env.url("FLAREPORT_MASTER_URL", "DOCKFLARE_MASTER_URL", schemes=("http", "https"), required=True),
        api_key=env.text("FLAREPORT_API_KEY", "DOCKFLARE_API_KEY", required=True),
        docker_host=env.optional("DOCKER_HOST"),
        cloudflared_image=validate_image(name, image),
        data_dir=env.text("AGENT_DATA_DIR", default=_AGENT["data_dir"]),
        label_prefix=env.optional("LABEL_PREFIX"),
        log_level=level,
        log_format=fmt,
        tz=env.optional("TZ"),
        health_port=env.integer("FLAREPORT_HEALTH_PORT", default=_AGENT["health_port"], minimum=0, maximum=65535),
        event_loop=_event_loop(env),
        **agent_options(env, _AGENT),
    )


S = TypeVar("S")


def secret_values(settings: object) -> tuple[str, ...]:
    """Every secret a settings struct holds, for the log redactor: each field kept out of ``repr`` (keys, tokens,
    passwords) and, of a URL kept out of it (the Redis URL), its password, plain and percent-decoded."""
    found: list[str] = []
    if not is_dataclass(settings):
        return ()
    for item in fields(settings):
        value = getattr(settings, item.name)
        if is_dataclass(value):
            found.extend(secret_values(value))
        elif isinstance(value, str) and value and not item.repr:
            if "://" not in value:
                found.append(value)
                continue
            # A URL is no secret, its password is: the host and port stay readable in the logs.
            password = urlsplit(value).password
            if password:
                found.extend({password, unquote(password)})
    return tuple(found)


def load_or_exit(loader: Callable[[Mapping[str, str]], S], environ: Mapping[str, str] | None = None) -> S:
    """Parse settings or stop the process with one line naming the bad variable (exit status 2)."""
    try:
        return loader(os.environ if environ is None else environ)
    except SettingsError as exc:
        _exit_with(f"flareport: invalid configuration: {exc}")


def _exit_with(line: str) -> NoReturn:
    print(line, file=sys.stderr)
    raise SystemExit(2)
