"""Where the Redis data lives beyond ``REDIS_URL``: Redis Sentinel, and credentials and TLS for the data nodes.

Names follow what operators know from other Redis clients (Bitnami's images, ioredis, Sidekiq): a list of
Sentinels (``REDIS_SENTINELS``), the master's name as the Sentinels know it (``REDIS_SENTINEL_MASTER``, Redis'
own default ``mymaster``) and the Sentinels' own credentials and TLS, kept apart from the data nodes' because the
two are often different (a Sentinel ``requirepass`` is not the data ``requirepass``).

Without ``REDIS_SENTINELS`` nothing changes: ``REDIS_URL`` names the one server, as before. With it, the Sentinels
name the master and ``REDIS_URL``'s host and port are not used; its user, password, database and ``rediss://``
scheme still apply to the data nodes, so one ``REDIS_URL`` with the password can stay in a shared configuration.
``REDIS_USERNAME``/``REDIS_PASSWORD`` fill in what the URL does not carry; they never override it (a variable
left over in a shell must not change how a single-server deployment authenticates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flareport_common.env import Env
from flareport_common.errors import SettingsError

DEFAULT_SENTINEL_PORT = 26379
DEFAULT_MASTER_NAME = "mymaster"
# Writes that must survive a failover (agent keys, enrolments) wait this long for a replica's acknowledgement.
DEFAULT_WAIT_TIMEOUT_MS = 1000


@dataclass(frozen=True, slots=True)
class RedisNodes:
    """How to find and reach the Redis data nodes (the defaults: one server at ``REDIS_URL``, as always)."""

    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = DEFAULT_MASTER_NAME
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False
    sentinel_tls_ca_file: str | None = None
    # The data nodes' credentials when REDIS_URL carries none, and TLS beyond a rediss:// URL.
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    # Replicas that must hold a write that may not be lost (WAIT) before it is acknowledged; 0: no waiting.
    wait_replicas: int = 0
    wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS

    @property
    def sentinel_mode(self) -> bool:
        return bool(self.sentinels)


def load_redis_nodes(env: Env, redis_url: str) -> RedisNodes:
    d = RedisNodes()  # the defaults, written once on the struct's fields
    sentinels = _addresses(env, "REDIS_SENTINELS")
    if sentinels and urlsplit(redis_url).scheme == "unix":
        raise SettingsError("REDIS_URL: a unix:// socket cannot be combined with REDIS_SENTINELS")
    master = env.text("REDIS_SENTINEL_MASTER", default=d.master_name)
    if any(c.isspace() for c in master):
        raise SettingsError(f"REDIS_SENTINEL_MASTER: a master name has no spaces, got {master!r}")
    return RedisNodes(
        sentinels=sentinels,
        master_name=master,
        sentinel_username=env.optional("REDIS_SENTINEL_USERNAME"),
        sentinel_password=env.optional("REDIS_SENTINEL_PASSWORD"),
        sentinel_tls=env.flag("REDIS_SENTINEL_TLS", default=d.sentinel_tls),
        sentinel_tls_ca_file=env.optional("REDIS_SENTINEL_TLS_CA_FILE"),
        username=env.optional("REDIS_USERNAME"),
        password=env.optional("REDIS_PASSWORD"),
        tls=env.flag("REDIS_TLS", default=d.tls),
        tls_ca_file=env.optional("REDIS_TLS_CA_FILE"),
        # With Sentinel a write acknowledged by the master alone can vanish in a failover: wait for one replica.
        wait_replicas=env.integer(
            "REDIS_WAIT_REPLICAS", default=1 if sentinels else d.wait_replicas, minimum=0, maximum=16
        ),
        wait_timeout_ms=env.integer("REDIS_WAIT_TIMEOUT_MS", default=d.wait_timeout_ms, minimum=10, maximum=60_000),
    )


def _addresses(env: Env, name: str) -> tuple[tuple[str, int], ...]:
    """``host:port`` items separated by commas or spaces; the port defaults to 26379; IPv6 as ``[::1]:26379``."""
    found: list[tuple[str, int]] = []
    for item in (env.optional(name) or "").replace(",", " ").split():
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or parts.path or parts.username is not None:
            raise SettingsError(f"{name}: expected host:port items, got {item!r}")
        found.append((host, port or DEFAULT_SENTINEL_PORT))
    return tuple(found)
