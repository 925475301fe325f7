"""The one door to Cloudflare: the official SDK's async client, behind our rate limit and retry policy.

Why the SDK is built with ``max_retries=0``: its own retries (2 by default) would happen *inside* one of our
calls — after we took one token from the shared bucket, but spending two or three requests of the budget,
and obeying Retry-After only up to 60 s for this one caller while every other replica keeps calling. Our
policy instead: every attempt takes a token; a 429 pauses all replicas until Retry-After; 5xx, 409, timeouts
and connection errors are retried with capped exponential backoff and jitter — but only for idempotent
requests (GET, PUT, PATCH, DELETE). A POST that timed out may have been applied; repeating it could create
a duplicate, so it is reported as ambiguous and the caller re-reads Cloudflare before deciding again.
Other 4xx answers are permanent and carry Cloudflare's code and message up to the job's result.

Requests go through the SDK's generic verbs with Cloudflare's documented v4 paths and plain JSON bodies:
the paths are the contract the emulator checks, the raw ``result_info`` lets a list stop at its last page
(the typed paginator asks for one more, empty, page on every list), and nothing is lost to model parsing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import cloudflare
import structlog

from flareport_common.backoff import Backoff
from flareport_dns_worker.metrics import CALLS, RATE_LIMITED
from flareport_dns_worker.ratelimit import RateLimiter

Json = dict[str, Any]
log = structlog.get_logger("flareport.dns_worker.cloudflare")
IDEMPOTENT = frozenset({"GET", "PUT", "PATCH", "DELETE"})
RETRIED_STATUSES = frozenset({409, 500, 502, 503, 504, 520, 521, 522, 523, 524})


class CfApiError(Exception):
    """Cloudflare refused the request (a 4xx other than 429/409): retrying cannot help."""

    def __init__(self, status: int, code: int, message: str, endpoint: str) -> None:
        super().__init__(f"{endpoint}: {status} [{code}] {message}")
        self.status = status
        self.code = code
        self.message = message
        self.endpoint = endpoint


class CfTransientError(Exception):
    """Cloudflare did not answer usefully (5xx, timeout, connection) after every attempt we allow.
    ``ambiguous`` means a non-idempotent write may or may not have been applied; ``status`` is Cloudflare's
    last HTTP status, if it answered at all (a ``409`` to a tunnel create means the name is taken).
    """

    def __init__(self, message: str, *, ambiguous: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.status = status


def _first_error(body: object) -> tuple[int, str]:
    if isinstance(body, Mapping):
        errors = body.get("errors") or []
        if errors and isinstance(errors[0], Mapping):
            return int(errors[0].get("code") or 0), str(errors[0].get("message") or "")
    return 0, str(body)


def _retry_after(error: cloudflare.APIStatusError) -> float:
    raw = error.response.headers.get("retry-after", "")
    try:
        return max(1.0, float(raw))
    except ValueError:
        return 5.0


class CloudflareApi:
    def __init__(
        self,
        client: cloudflare.AsyncCloudflare,
        limiter: RateLimiter,
        *,
        account_id: str,
        max_attempts: int = 5,
        backoff_initial: float = 0.2,
        backoff_maximum: float = 10.0,
    ) -> None:
        self.client = client
        self.account_id = account_id
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_maximum)
        # Calls sent by this process, by endpoint template (benchmarks and tests read it).
        self.calls: Counter[str] = Counter()

    async def request(
        self,
        method: str,
        template: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        **ids: str,
    ) -> Json:
        """Send one logical request and return Cloudflare's envelope (``result``, ``result_info``...)."""
        endpoint = f"{method} {template}"
        path = template.format(account_id=self.account_id, **ids)
        backoff = Backoff(initial=self._backoff[0], maximum=self._backoff[1])
        attempts = 0
        limited = 0
        while True:
            status: int | None = None
            await self._limiter.acquire()
            self.calls[endpoint] += 1
            try:
                response = await self._send(method, path, params, body)
            except cloudflare.APIStatusError as error:
                status = error.status_code
                if status == 429:
                    CALLS.labels(endpoint, "rate_limited").inc()
                    RATE_LIMITED.inc()
                    limited += 1
                    wait = _retry_after(error)
                    log.warning("cloudflare.rate_limited", endpoint=endpoint, retry_after=wait)
                    await self._limiter.pause(wait)
                    if limited > 10 * self._max_attempts:
                        raise CfTransientError(f"{endpoint}: still rate limited", ambiguous=False) from error
                    continue  # a 429 was refused before anything happened: always safe to repeat
                code, message = _first_error(error.body)
                if status not in RETRIED_STATUSES and status < 500:
                    CALLS.labels(endpoint, "client_error").inc()
                    raise CfApiError(status, code, message, endpoint) from error
                CALLS.labels(endpoint, "server_error").inc()
                reason = f"{endpoint}: {status} [{code}] {message}"
            except cloudflare.APITimeoutError as error:
                CALLS.labels(endpoint, "timeout").inc()
                reason = f"{endpoint}: timed out ({error})"
            except cloudflare.APIConnectionError as error:
                CALLS.labels(endpoint, "connection_error").inc()
                reason = f"{endpoint}: connection error ({error})"
            else:
                CALLS.labels(endpoint, "ok").inc()
                return response if isinstance(response, dict) else {"result": response}
            attempts += 1
            if method not in IDEMPOTENT:
                raise CfTransientError(reason, ambiguous=True, status=status)
            if attempts >= self._max_attempts:
                raise CfTransientError(reason, ambiguous=False, status=status)
            delay = backoff.next()
            log.warning("cloudflare.retrying", endpoint=endpoint, reason=reason, attempt=attempts, retry_in=delay)
            await asyncio.sleep(delay)

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> object:
        options: Any = {"params": dict(params)} if params else {}
        client = self.client
        if method == "GET":
            return await client.get(path, cast_to=object, options=options)
        if method == "POST":
            return await client.post(path, cast_to=object, body=body, options=options)
        if method == "PUT":
            return await client.put(path, cast_to=object, body=body, options=options)
        if method == "PATCH":
            return await client.patch(path, cast_to=object, body=body, options=options)
        if method == "DELETE":
            return await client.delete(path, cast_to=object, body=body, options=options)
        raise ValueError(f"unsupported method {method}")

    async def list_all(
        self, template: str, *, per_page: int, params: Mapping[str, Any] | None = None, **ids: str
    ) -> list[Json]:
        """Every item of a paginated list, reading pages of ``per_page`` and stopping at the last one."""
        items: list[Json] = []
        page = 1
        while True:
            envelope = await self.request(
                "GET", template, params={**(params or {}), "page": page, "per_page": per_page}, **ids
            )
            chunk = envelope.get("result") or []
            items.extend(chunk)
            info = envelope.get("result_info") or {}
            total_pages = int(info.get("total_pages") or 0)
            if not chunk or page >= total_pages:
                return items
            page += 1
