"""Redis client construction from settings: one pool per process, bytes in and out (msgspec decodes).

Every service (and the API's agent gateway) gets its client here, so one place decides how Redis is reached:
one server at ``REDIS_URL``, or the master that Redis Sentinel names (``REDIS_SENTINELS``, see
``flareport_common.redissettings``).

The pool blocks when all its connections are busy (up to ``wait_seconds``) instead of failing at once: a burst
that briefly needs more connections than the pool holds must slow down, not turn into handler errors, retries
and eventually dead letters. Taking and giving back a connection skips that machinery while a connection is free
and nobody waits for one (``_QuickPool``), which is nearly always.

With Sentinel, every new connection asks the Sentinels for the current master, and redis-py turns a READONLY
reply (the node it talks to was demoted to a replica) into a connection error after dropping that connection. So
a failover looks to the services exactly like a Redis restart, which every loop already survives: the call fails
with a connection error, the caller backs off and tries again, and the next connection goes to the new master.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flareport_common.redispack import packed
from flareport_common.redissettings import RedisNodes
from flareport_common.replies import text
from flareport_common.settings import CommonSettings

log = structlog.get_logger("flareport.redis")
# A Sentinel that does not answer within this time is skipped for the next one: discovering the master must
# never hang on one dead Sentinel while others are up.
SENTINEL_TIMEOUT_SECONDS = 2.0


class _QuickPool:
    """redis-py's blocking pool, with a fast way in and out while a connection is free and nobody waits for one.

    redis-py's ``BlockingConnectionPool`` takes a condition, starts a timer and records wait-time metrics for every
    command, and takes the condition again to give the connection back: measured here, a sixth of the CPU of a
    Redis round trip. A free connection is simply taken; one given back while nobody waits needs no notification.
    Anything else (every connection busy, callers waiting, the pool in maintenance) goes through redis-py's path,
    so the waiting and its timeout are unchanged. Between a waiter's check and its wait there is no ``await`` (the
    condition's ``wait_for``), so a waiter is always seen here."""

    _available_connections: list[Any]
    _condition: Any

    def _nobody_waits(self) -> bool:
        return not getattr(self._condition, "_waiters", None) and not getattr(self, "_in_maintenance", False)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        base: Any = super()
        if not (self._available_connections and self._nobody_waits()):
            return await base.get_connection()
        pool: Any = self
        connection = pool.get_available_connection()  # a free one: never a new connection, never over the limit
        try:
            await pool.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        if self._nobody_waits():
            # What the blocking pool does inside its condition, without the condition: nobody to notify.
            await super(aioredis.BlockingConnectionPool, self).release(connection)  # type: ignore[misc]
        else:
            await super().release(connection)  # type: ignore[misc]


class QuickBlockingPool(_QuickPool, aioredis.BlockingConnectionPool):
    """The pool of a client of one server (``_QuickPool``)."""


class _BlockingSentinelPool(_QuickPool, SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection, as the single-server pool does."""


class SentinelRedis(aioredis.Redis):
    """A client of the Sentinel-named master that also closes its connections to the Sentinels."""

    sentinels: Sentinel | None = None
    master_name: str = ""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def connect(settings: CommonSettings, *, max_connections: int = 64, wait_seconds: float = 20.0) -> aioredis.Redis:
    kwargs: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": wait_seconds,
        "health_check_interval": 15,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
    }
    nodes = settings.redis_nodes
    if nodes.sentinel_mode:
        return _sentinel_client(settings, kwargs)
    if settings.redis_db_index is not None:
        kwargs["db"] = settings.redis_db_index
    # What the URL carries wins (redis-py's from_url): these only fill in what it leaves out.
    if nodes.username is not None:
        kwargs["username"] = nodes.username
    if nodes.password is not None:
        kwargs["password"] = nodes.password
    if nodes.tls or settings.redis_url.startswith("rediss://"):
        kwargs.update(_tls(nodes.tls_ca_file))
        kwargs["connection_class"] = SSLConnection
    # As redis-py's ``from_url`` (the URL's options win), then the class it picks (by the scheme: a unix socket,
    # TLS) swapped for one that packs commands in C (``redispack``).
    kwargs.update(parse_url(settings.redis_url))
    kwargs["connection_class"] = packed(kwargs.get("connection_class") or Connection)
    pool = QuickBlockingPool(**kwargs)
    return aioredis.Redis(connection_pool=pool)


def _tls(ca_file: str | None) -> dict[str, Any]:
    return {} if ca_file is None else {"ssl_ca_certs": ca_file}


def _sentinel_client(settings: CommonSettings, kwargs: dict[str, Any]) -> aioredis.Redis:
    nodes = settings.redis_nodes
    url: dict[str, Any] = dict(parse_url(settings.redis_url))
    db = url.get("db", settings.redis_db_index)
    kwargs.update(
        username=url.get("username") or nodes.username,
        password=url.get("password") or nodes.password,
        db=db or 0,
    )
    tls = nodes.tls or settings.redis_url.startswith("rediss://")
    if tls:
        kwargs.update(ssl=True, **_tls(nodes.tls_ca_file))
    # What the Sentinel pool would pick (redis-py: by ``ssl``), packing commands in C (``redispack``).
    kwargs["connection_class"] = packed(SentinelManagedSSLConnection if tls else SentinelManagedConnection)
    sentinels = Sentinel(nodes.sentinels, sentinel_kwargs=_sentinel_options(nodes))  # type: ignore[no-untyped-call]
    client: SentinelRedis = sentinels.master_for(
        nodes.master_name, redis_class=SentinelRedis, connection_pool_class=_BlockingSentinelPool, **kwargs
    )
    client.sentinels = sentinels
    client.master_name = nodes.master_name
    return client


WAIT_SHORTFALLS = Counter(
    "flareport_redis_wait_shortfalls_total",
    "Writes that must survive a failover (agent keys, enrolments) not acknowledged by REDIS_WAIT_REPLICAS replicas "
    "within REDIS_WAIT_TIMEOUT_MS; the write stands on the master alone.",
    ["what"],
)


async def replicated(client: aioredis.Redis, nodes: RedisNodes, channel: str, *, what: str) -> bool:
    """Wait until ``nodes.wait_replicas`` replicas hold every write this process completed so far (True), or the
    timeout passed (False, logged and counted; the write stands).

    WAIT counts the writes of the connection it is sent on, and the pool may have used any connection for the
    caller's write. So a PUBLISH (replicated, no key, nobody listens) goes first on one pinned connection: the
    replication stream is ordered, so a replica that acknowledged it holds everything written before it.
    """
    if nodes.wait_replicas == 0:
        return True
    async with client.client() as pinned:
        await pinned.publish(channel, what)
        acked = int(await pinned.wait(nodes.wait_replicas, nodes.wait_timeout_ms))
    if acked >= nodes.wait_replicas:
        return True
    WAIT_SHORTFALLS.labels(what).inc()
    log.warning("redis.not_replicated", what=what, replicas=acked, wanted=nodes.wait_replicas)
    return False


# Sentinel's flags for a master that is down or being replaced: writes may fail or vanish until it is over.
_FAILOVER_FLAGS = frozenset({"s_down", "o_down", "failover_in_progress", "promoted"})


async def ready(client: aioredis.Redis) -> bool:
    """Readiness (``/readyz``): Redis answers. With Sentinel also: the node this client writes to is a master, and
    no Sentinel reports the master down or a failover in progress (the service would only get errors meanwhile)."""
    if not isinstance(client, SentinelRedis) or client.sentinels is None:
        return bool(await client.ping())
    role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
    if text(role[0]) != "master":
        return False
    for sentinel in client.sentinels.sentinels:
        try:
            state = await sentinel.sentinel_master(client.master_name)
        except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
            continue  # another Sentinel answers
        return isinstance(state, dict) and not (set(state.get("flags", ())) & _FAILOVER_FLAGS)
    return False


def _sentinel_options(nodes: RedisNodes) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
        "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        "username": nodes.sentinel_username,
        "password": nodes.sentinel_password,
    }
    if nodes.sentinel_tls:
        options.update(ssl=True, **_tls(nodes.sentinel_tls_ca_file))
    return options
