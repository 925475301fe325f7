"""Who is calling: the admin (MASTER_API_KEY) or one agent (its own key), and a brake on guessing.

* Admin: the presented bearer token is compared with the master key in constant time (``hmac.compare_digest``
  on the two SHA-256 digests, so even the length of the master key does not leak through timing).
* Agent: the token's SHA-256 finds the key record; a revoked key is refused on the very next request because
  nothing is cached. The agent id is the key's binding, never something the agent says; a path naming
  another agent is 403.
* The brake never refuses a valid credential: the key is checked first, and only a failure consults it. Failures
  are counted per (client address, presented key id): ``master`` for the admin key, the ``key_…`` id an agent key
  names in its ``fpk_<id>`` head, ``-`` for anything else. Past the limit a failing request gets 429 with
  ``Retry-After`` instead of 401. So nobody can lock a valid agent or the admin out by failing on purpose, not
  even from the same address (a reverse proxy that all clients share); the client address is the peer, or the
  one a configured trusted proxy names (``clientaddr``). Guessing gains nothing from this: agent keys carry 256
  random bits and the master key has at least 16 characters; the brake tells a misconfigured or hostile client
  to back off and shows it in ``flareport_api_auth_failures_total``.
* Each process keeps a sliding window of its own, and every failure is also counted in Redis (``SharedFailures``:
  one counter per bucket and window, shared by all replicas), so behind a load balancer a bucket is braked after
  ``limit`` failures in all, plus at most one per replica that had not yet seen it fail. A Redis that cannot
  count leaves the local window in charge.
* A long-poll checks its key again before it answers (``recheck``): a key revoked while the poll waited gets 401.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import time

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from flareport_api.clientaddr import client_address
from flareport_api.errors import ApiError
from flareport_api.keyproof import named_key_id
from flareport_api.keystore import KeyStore, StoredKey
from flareport_api.metrics import AUTH_FAILURES
from flareport_common.keys import Keys

log = structlog.get_logger("flareport.api.auth")


class FailureLimiter:
    def __init__(self, limit: int, window_s: float, *, clock: collections.abc.Callable[[], float] = time.monotonic):
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}
        self._braked: dict[str, float] = {}

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    def _recent(self, client: str) -> collections.deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        horizon = self._clock() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until this client may try again, or None if it is not limited."""
        until = self._braked.get(client)
        if until is not None:
            left = until - self._clock()
            if left > 0:
                return max(1, math.ceil(left))
            del self._braked[client]
        times = self._recent(client)
        if times is None or len(times) < self._limit:
            return None
        return max(1, math.ceil(times[0] + self._window - self._clock()))

    def brake(self, client: str, seconds: float) -> None:
        """Refuse this client for ``seconds`` (the replicas together counted its failures past the limit)."""
        self._braked[client] = self._clock() + seconds
        if len(self._braked) > 100_000:
            self._braked.pop(next(iter(self._braked)))

    def failed(self, client: str) -> None:
        times = self._recent(client)
        if times is None:
            times = self._failures[client] = collections.deque()
        times.append(self._clock())
        if len(self._failures) > 100_000:  # an address-spraying client must not grow this without bound
            self._failures.pop(next(iter(self._failures)))


async def count_failure(redis: aioredis.Redis, key: str, window_s: float) -> tuple[int, int]:
    """One more failure in the fixed window that the first failure at ``key`` opened: (failures, seconds left)."""
    pipe = redis.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, max(1, math.ceil(window_s)), nx=True)
    pipe.ttl(key)
    count, _, ttl = await pipe.execute()
    return int(count), int(ttl)


class SharedFailures:
    """Failed authentications per address, counted in Redis by every API replica (a fixed window per address)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, limiter: FailureLimiter) -> None:
        self._redis = redis
        self._keys = keys
        self._limiter = limiter

    async def failed(self, client: str) -> None:
        self._limiter.failed(client)
        key = self._keys.api_auth_failures(client)
        try:
            count, ttl = await count_failure(self._redis, key, self._limiter.window)
        except Exception as exc:  # Redis away: this process's own window still brakes
            log.warning("auth.shared_count_failed", error=str(exc))
            return
        if count >= self._limiter.limit and ttl > 0:
            self._limiter.brake(client, int(ttl))


def presented_key_id(token: str | None) -> str:
    """The key id a presented agent key names (``fpk_<16 hex>…`` → ``key_<16 hex>``), else ``-``. Only a bucket
    name for the brake: the id is not checked, so a guesser that varies it gains a bucket per id, never a key."""
    return (named_key_id(token) if token is not None else None) or "-"


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(self, master_key: str, store: KeyStore, limiter: FailureLimiter, shared: SharedFailures) -> None:
        self._master_digest = hashlib.sha256(master_key.encode()).digest()
        self._store = store
        self._limiter = limiter
        self._shared = shared

    def _bucket(self, request: web.Request, key_id: str) -> str:
        return f"{client_address(request)} {key_id}"

    async def _fail(self, request: web.Request, key_id: str, code: str, message: str) -> ApiError:
        """The error for a failed authentication: 429 while its bucket is braked, else 401 (and one more failure
        counted). Called only after the credential was checked, so a valid one never meets the brake."""
        bucket = self._bucket(request, key_id)
        retry = self._limiter.retry_after(bucket)
        if retry is not None:
            AUTH_FAILURES.labels("braked").inc()
            return ApiError(
                429,
                "too_many_failures",
                f"too many failed authentications from this address with this key; retry in {retry}s",
                headers={"Retry-After": str(retry)},
            )
        await self._shared.failed(bucket)
        AUTH_FAILURES.labels(code).inc()
        return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="flareport"'})

    async def admin(self, request: web.Request) -> None:
        token = bearer(request)
        if token is None:
            raise await self._fail(
                request, "master", "missing_key", "Authorization: Bearer <MASTER_API_KEY> is required"
            )
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        if not hmac.compare_digest(digest, self._master_digest):
            raise await self._fail(request, "master", "invalid_key", "not the admin key")

    async def agent(self, request: web.Request) -> StoredKey:
        token = bearer(request)
        key_id = presented_key_id(token)
        if token is None:
            raise await self._fail(request, key_id, "missing_key", "Authorization: Bearer <agent key> is required")
        stored = await self._store.lookup(token)
        if stored is None:
            raise await self._fail(request, key_id, "unknown_key", "unknown agent key")
        if stored.status == "revoked":
            raise await self._fail(request, key_id, "key_revoked", "this agent key was revoked")
        await self._store.touch(stored)
        return stored

    async def recheck(self, request: web.Request, stored: StoredKey, agent_id: str) -> None:
        """Before a long-poll answers: the key that opened it is still valid for ``agent_id`` now. A revocation or
        a removal while the poll waited ends it with 401, so nothing (no tunnel token, no rolled key) is handed to
        a key that is no longer valid. Not a guess, so not counted by the brake."""
        if not await self.still_valid(request, stored, agent_id):
            AUTH_FAILURES.labels("key_revoked").inc()
            raise ApiError(
                401,
                "key_revoked",
                "this agent key was revoked (or its agent removed) while the request waited",
                headers={"WWW-Authenticate": 'Bearer realm="flareport"'},
            )

    async def still_valid(self, request: web.Request, stored: StoredKey, agent_id: str) -> bool:
        """Is the key that authenticated a request still valid for ``agent_id`` now (not revoked, not moved)?

        Revocation and removal keep the record (status ``revoked``), so a record that is gone means Redis lost its
        data while the request waited: the presented key then goes through the same restore as a new request would
        (``KeyStore.lookup``). Calling that a revocation would send the agent into its long back-off for a key
        that is still good."""
        now = await self._store.current(stored)
        if now is None:
            token = bearer(request)
            now = await self._store.lookup(token) if token is not None else None
        return now is not None and now.status != "revoked" and now.agent_id == agent_id

    async def agent_for(self, request: web.Request, agent_id: str) -> StoredKey:
        """An authenticated agent key that is bound to ``agent_id`` (403 otherwise)."""
        stored = await self.agent(request)
        if stored.agent_id is None:
            raise ApiError(403, "not_registered", "this key is not bound to an agent yet; register first")
        if not hmac.compare_digest(stored.agent_id.encode(), agent_id.encode()):
            raise ApiError(403, "forbidden_agent", "this key belongs to another agent")
        return stored
