"""The one door to Cloudflare: the official SDK's async client, behind our rate limit and retry policy.

Why the SDK is built with ``max_retries=0``: its own retries (2 by default) would happen *inside* one of our
calls — after we took one token from the shared bucket, but spending two or three requests of the budget,
and obeying Retry-After only up to 60 s for this one caller while every other replica keeps calling. Our
policy instead: every attempt takes a token; a 429 pauses all replicas until Retry-After; 5xx, timeouts and
connection errors are retried with capped exponential backoff and jitter — but only for idempotent requests
(GET, PUT, PATCH, DELETE). A POST that timed out may have been applied; repeating it could create a duplicate,
so it is reported as ambiguous and the caller re-reads Cloudflare before deciding again.

Every other 4xx is an answer, not an outage, and is never repeated blindly: it becomes a ``CfApiError`` whose
``kind`` says what it means, from the status *and* Cloudflare's code (see ``classify``). A 409 is a conflict or
an "already exists" (the caller decides which), never a transient error; an error nested in ``error_chain``
(Cloudflare wraps DNS errors under 1004 on some endpoints) is unpacked to its cause; a missing token permission
or a Zero Trust organisation that does not exist is named as such, for the job or rule that needed it.

Requests go through the SDK's generic verbs with Cloudflare's documented v4 paths and plain JSON bodies:
the paths are the contract the emulator checks, the raw ``result_info`` lets a list stop at its last page
(the typed paginator asks for one more, empty, page on every list), and nothing is lost to model parsing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import cloudflare
import httpx
import structlog

from flareport_common.backoff import Backoff
from flareport_dns_worker import calltime, jobtrace
from flareport_dns_worker.metrics import CALLS, RATE_LIMITED
from flareport_dns_worker.ratelimit import Admission
from flareport_dns_worker.ratelimit_header import Standing, parse_ratelimit

Json = dict[str, Any]
log = structlog.get_logger("flareport.dns_worker.cloudflare")
IDEMPOTENT = frozenset({"GET", "PUT", "PATCH", "DELETE"})
RETRIED_STATUSES = frozenset({500, 502, 503, 504, 520, 521, 522, 523, 524})
# Cloudflare codes that mean "something is already there" (DNS: 81053 A/AAAA/CNAME on that host, 81054 a CNAME
# on that host, 81057 the record already exists, 81058 an identical record; 1013 a tunnel of that name; 11010 an
# Access application on that domain).
CONFLICT_CODES = frozenset({81053, 81054, 81057, 81058, 1013, 11010})
# "Record does not exist.": the object our observed copy names is gone (a stale copy, not a bad request).
STALE_CODES = frozenset({81044})
# A token that lacks a permission: 10000 "Authentication error" answered with 403, 9109 "Unauthorized to access
# requested resource". (10000 with 401 is a token Cloudflare does not know at all.)
PERMISSION_CODES = frozenset({10000, 9109})
QUOTA_CODES = frozenset({81045})
# Words of Cloudflare's answer when the account has no Zero Trust organisation (Access not set up): the code of
# that answer is not documented, so the message decides.
NOT_ENABLED_HINTS = ("not enabled", "organization does not exist", "no access organization", "not set up")
# The token permission each endpoint needs (Cloudflare's names, as the dashboard shows them).
PERMISSIONS = (
    ("/zones/{zone_id}/dns_records", "Zone > DNS > Edit"),
    ("/zones", "Zone > Zone > Read"),
    ("/accounts/{account_id}/cfd_tunnel", "Account > Cloudflare Tunnel > Edit"),
    ("/accounts/{account_id}/members", "Account > Account Settings > Read"),
    (
        "/accounts/{account_id}/access/identity_providers",
        "Account > Access: Organizations, Identity Providers, and Groups > Read",
    ),
    ("/accounts/{account_id}/access", "Account > Access: Apps and Policies > Edit"),
)


def permission_for(endpoint: str) -> str:
    """The token permission an endpoint (``"METHOD /template"``) needs, by Cloudflare's name."""
    template = endpoint.partition(" ")[2]
    for prefix, permission in PERMISSIONS:
        if template.startswith(prefix):
            return permission
    return "the permission for " + template


def classify(status: int, code: int, message: str) -> str:
    """What a refusal means: ``conflict``, ``stale``, ``permission``, ``not_enabled``, ``quota`` or ``invalid``."""
    lowered = message.lower()
    if status == 409 or code in CONFLICT_CODES:
        return "conflict"
    if code in STALE_CODES:
        return "stale"
    if code in QUOTA_CODES or "quota" in lowered:
        return "quota"
    # Only about the account's Zero Trust organisation: "identity provider not enabled" is an ordinary refusal.
    if any(hint in lowered for hint in NOT_ENABLED_HINTS) and ("zero trust" in lowered or "organization" in lowered):
        return "not_enabled"
    if status in (401, 403) or code in PERMISSION_CODES:
        return "permission"
    return "invalid"


class CfApiError(Exception):
    """Cloudflare refused the request (a 4xx other than 429): repeating it as it is cannot help.

    ``code``/``message`` are the cause: the innermost entry of ``error_chain`` when Cloudflare nested one (``outer``
    keeps the wrapper, e.g. 1004 "DNS Validation Error"). ``kind`` is ``classify``'s reading of it; ``explain()``
    says it in words a rule's error can show.
    """

    def __init__(self, status: int, code: int, message: str, endpoint: str, *, outer: int | None = None) -> None:
        super().__init__(f"{endpoint}: {status} [{code}] {message}")
        self.status = status
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.outer = outer
        self.kind = classify(status, code, message)

    def explain(self) -> str:
        said = f"Cloudflare answered {self.status} [{self.code}] {self.message}"
        if self.kind == "permission" and self.status == 401:
            return f"Cloudflare does not accept the API token ({said} to {self.endpoint}); check CLOUDFLARE_API_TOKEN"
        if self.kind == "permission":
            return (
                f"the API token lacks the permission {permission_for(self.endpoint)!r} ({said} to {self.endpoint}); "
                "grant it to the token"
            )
        if self.kind == "not_enabled":
            return f"Cloudflare Zero Trust (Access) is not enabled on this account ({said}); set it up in the dashboard"
        if self.kind == "quota":
            return f"the zone's DNS record quota is reached ({said}); remove records or change the zone's plan"
        return self.message


class CfTransientError(Exception):
    """Cloudflare did not answer usefully (5xx, timeout, connection) after every attempt we allow.
    ``ambiguous`` means a non-idempotent write may or may not have been applied; ``status`` is Cloudflare's
    last HTTP status, if it answered at all.
    """

    def __init__(self, message: str, *, ambiguous: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.status = status


def _first_error(body: object) -> tuple[int, str, int | None]:
    """``(code, message, outer code)`` of Cloudflare's first error, followed down its ``error_chain`` to the cause."""
    if isinstance(body, Mapping):
        errors = body.get("errors") or []
        if errors and isinstance(errors[0], Mapping):
            error: Mapping[str, Any] = errors[0]
            outer: int | None = None
            for _ in range(8):  # a chain is one or two deep; never trust a body to end
                chain = error.get("error_chain") or []
                if not chain or not isinstance(chain[0], Mapping):
                    break
                outer = outer if outer is not None else int(error.get("code") or 0)
                error = chain[0]
            return int(error.get("code") or 0), str(error.get("message") or ""), outer
    return 0, str(body), None


async def _body(response: httpx.Response) -> object:
    """The answer's body as the SDK gives it for ``cast_to=object``: JSON when Cloudflare says it is, else text."""
    await response.aread()
    content_type = response.headers.get("content-type", "*").split(";")[0]
    return response.json() if content_type.endswith("json") else response.text


def _retry_after(error: cloudflare.APIStatusError) -> float:
    raw = error.response.headers.get("retry-after", "")
    try:
        return max(1.0, float(raw))
    except ValueError:
        return 5.0


def _connection_failure(error: cloudflare.APIConnectionError) -> aiohttp.ClientConnectionError | None:
    """The aiohttp connection error behind ``error`` that is not a timeout, if there is one.

    The aiohttp transport (``service.make_sdk``) turns every aiohttp connection error (refused, reset, closed,
    unknown host) into httpx's ConnectTimeout, which the SDK raises as APITimeoutError: without this, an unreachable
    Cloudflare would be counted and reported as one that is too slow.
    """
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, aiohttp.ServerTimeoutError):
            return cause
        cause = cause.__cause__
    return None


class Limiter(Protocol):
    """What a call needs from the rate limit: the shared Redis bucket (``ratelimit.RateLimiter``) in the worker,
    a process-local one in one-shot commands (``flareport doctor``)."""

    async def acquire(self) -> Admission: ...

    async def ended(self, admission: Admission, standing: Standing | None = None) -> None: ...

    async def pause(self, seconds: float) -> None: ...


class CloudflareApi:
    def __init__(
        self,
        client: cloudflare.AsyncCloudflare,
        limiter: Limiter,
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
            admission = await self._limiter.acquire()
            self.calls[endpoint] += 1
            jobtrace.cloudflare_call()
            sent = time.monotonic()
            answered: httpx.Headers | None = None
            try:
                try:
                    raw = await self._send(method, path, params, body)
                    answered = raw.headers
                except cloudflare.APIStatusError as error:
                    answered = error.response.headers
                    raise
                finally:
                    # Whatever the outcome (a cancellation too), the call has reached Cloudflare or never will; an
                    # answer tells how much of the user's budget Cloudflare still counts as left.
                    standing = None
                    if answered is not None:
                        standing = parse_ratelimit(answered.get("ratelimit"), answered.get("ratelimit-policy"))
                    await asyncio.shield(self._limiter.ended(admission, standing))
                response = await _body(raw)
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
                code, message, outer = _first_error(error.body)
                if status not in RETRIED_STATUSES and status < 500:
                    CALLS.labels(endpoint, "client_error").inc()
                    raise CfApiError(status, code, message, endpoint, outer=outer) from error
                CALLS.labels(endpoint, "server_error").inc()
                reason = f"{endpoint}: {status} [{code}] {message}"
            except cloudflare.APIConnectionError as error:  # APITimeoutError is one
                failure = _connection_failure(error)
                if isinstance(error, cloudflare.APITimeoutError) and failure is None:
                    CALLS.labels(endpoint, "timeout").inc()
                    reason = f"{endpoint}: timed out ({error})"
                else:
                    CALLS.labels(endpoint, "connection_error").inc()
                    reason = f"{endpoint}: connection error ({failure or error})"
            else:
                CALLS.labels(endpoint, "ok").inc()
                return response if isinstance(response, dict) else {"result": response}
            finally:
                calltime.spent(time.monotonic() - sent)  # on the wire: not the limiter's queue nor a backoff
            attempts += 1
            if method not in IDEMPOTENT:
                raise CfTransientError(reason, ambiguous=True, status=status)
            if attempts >= self._max_attempts:
                raise CfTransientError(reason, ambiguous=False, status=status)
            delay = backoff.next()
            log.warning("cloudflare.retrying", endpoint=endpoint, reason=reason, attempt=attempts, retry_in=delay)
            await asyncio.sleep(delay)

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> httpx.Response:
        # The raw answer (its headers carry Cloudflare's rate-limit standing); the SDK still raises on a 4xx/5xx.
        options: Any = {"params": dict(params)} if params else {}
        client, raw = self.client, httpx.Response
        if method == "GET":
            return await client.get(path, cast_to=raw, options=options)
        if method == "POST":
            return await client.post(path, cast_to=raw, body=body, options=options)
        if method == "PUT":
            return await client.put(path, cast_to=raw, body=body, options=options)
        if method == "PATCH":
            return await client.patch(path, cast_to=raw, body=body, options=options)
        if method == "DELETE":
            return await client.delete(path, cast_to=raw, body=body, options=options)
        raise ValueError(f"unsupported method {method}")

    async def list_all(
        self, template: str, *, per_page: int, params: Mapping[str, Any] | None = None, **ids: str
    ) -> list[Json]:
        """Every item of a paginated list, reading pages of ``per_page`` and stopping at the last one.

        ``result_info`` decides, whatever it holds: a ``cursor`` is followed while Cloudflare gives one; else
        ``total_pages``, when present, says where the last page is; else (the tunnel list has no totals) pages
        are read while they come back full (``count`` — or the page's length — equal to ``per_page``).
        """
        items: list[Json] = []
        page = 1
        cursor: str | None = None
        while True:
            paging: dict[str, Any] = {"per_page": per_page}
            if cursor is not None:
                paging["cursor"] = cursor
            else:
                paging["page"] = page
            envelope = await self.request("GET", template, params={**(params or {}), **paging}, **ids)
            chunk = envelope.get("result") or []
            items.extend(chunk)
            info = envelope.get("result_info") or {}
            if not chunk:
                return items
            next_cursor = info.get("cursor") or (info.get("cursors") or {}).get("after")
            if next_cursor:
                if next_cursor == cursor:
                    return items  # a cursor that does not move would loop forever
                cursor = str(next_cursor)
                continue
            if info.get("total_pages") is not None:
                if page >= int(info["total_pages"]):
                    return items
            else:
                count = info.get("count")
                size = int(count) if isinstance(count, int | float) else len(chunk)
                if size < int(info.get("per_page") or per_page):
                    return items
            page += 1
