"""Who is calling: the admin (MASTER_API_KEY) or one agent (its own key), and a brake on guessing.

* Admin: the presented bearer token is compared with the master key in constant time (``hmac.compare_digest``
  on the two SHA-256 digests, so even the length of the master key does not leak through timing).
* Agent: the token's SHA-256 finds the key record; a revoked key is refused on the very next request because
  nothing is cached. The agent id is the key's binding, never something the agent says; a path naming
  another agent is 403.
* Failed authentications are counted per client address in a sliding window; past the limit every request
  from that address is answered 429 with ``Retry-After`` *before* any key is checked, so guessing costs the
  attacker time, not us Redis round trips. The window is per API process, which is enough to make a 256-bit
  key unguessable in practice (it already is) and to keep a misconfigured agent from hammering Redis.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import time

from aiohttp import web

from flareport_api.errors import ApiError
from flareport_api.keystore import KeyStore, StoredKey
from flareport_api.metrics import AUTH_FAILURES


class FailureLimiter:
    def __init__(self, limit: int, window_s: float, *, clock: collections.abc.Callable[[], float] = time.monotonic):
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

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
        times = self._recent(client)
        if times is None or len(times) < self._limit:
            return None
        return max(1, math.ceil(times[0] + self._window - self._clock()))

    def failed(self, client: str) -> None:
        times = self._recent(client)
        if times is None:
            times = self._failures[client] = collections.deque()
        times.append(self._clock())
        if len(self._failures) > 100_000:  # an address-spraying client must not grow this without bound
            self._failures.pop(next(iter(self._failures)))


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(self, master_key: str, store: KeyStore, limiter: FailureLimiter) -> None:
        self._master_digest = hashlib.sha256(master_key.encode()).digest()
        self._store = store
        self._limiter = limiter

    def _check_limited(self, request: web.Request) -> None:
        retry = self._limiter.retry_after(client_address(request))
        if retry is not None:
            raise ApiError(
                429,
                "too_many_failures",
                f"too many failed authentications from this address; retry in {retry}s",
                headers={"Retry-After": str(retry)},
            )

    def _fail(self, request: web.Request, code: str, message: str) -> ApiError:
        self._limiter.failed(client_address(request))
        AUTH_FAILURES.labels(code).inc()
        return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="flareport"'})

    def admin(self, request: web.Request) -> None:
        self._check_limited(request)
        token = bearer(request)
        if token is None:
            raise self._fail(request, "missing_key", "Authorization: Bearer <MASTER_API_KEY> is required")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        if not hmac.compare_digest(digest, self._master_digest):
            raise self._fail(request, "invalid_key", "not the admin key")

    async def agent(self, request: web.Request) -> StoredKey:
        self._check_limited(request)
        token = bearer(request)
        if token is None:
            raise self._fail(request, "missing_key", "Authorization: Bearer <agent key> is required")
        stored = await self._store.lookup(token)
        if stored is None:
            raise self._fail(request, "unknown_key", "unknown agent key")
        if stored.status == "revoked":
            raise self._fail(request, "key_revoked", "this agent key was revoked")
        await self._store.touch(stored)
        return stored

    async def agent_for(self, request: web.Request, agent_id: str) -> StoredKey:
        """An authenticated agent key that is bound to ``agent_id`` (403 otherwise)."""
        stored = await self.agent(request)
        if stored.agent_id is None:
            raise ApiError(403, "not_registered", "this key is not bound to an agent yet; register first")
        if not hmac.compare_digest(stored.agent_id.encode(), agent_id.encode()):
            raise ApiError(403, "forbidden_agent", "this key belongs to another agent")
        return stored
