"""The agent's side of the agent protocol (``flareport_common.protocol``): typed calls to the master's API.

Every failure becomes one of three errors so the loops above can decide without looking at HTTP:
``KeyRejected`` (401/403 — the key is revoked or unknown: stop calling, only re-register slowly),
``MasterUnavailable`` (network errors, 5xx, 429; carries the server's ``Retry-After`` when it sent one), and
``RequestRejected`` (any other 4xx: this request will never succeed as is, e.g. 422 with the offending field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgspec

from flareport_common import protocol
from flareport_common.messages.commands import CommandMessage

R = TypeVar("R")
# How long an idle connection to the master is kept for the next request (see ``_http``).
KEEPALIVE_SECONDS = 60.0


class MasterError(Exception):
    pass


class MasterUnavailable(MasterError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeyRejected(MasterError):
    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RequestRejected(MasterError):
    """The master refused this request as it is; ``code`` and ``field`` are its error's (``field`` names the
    offending part, e.g. ``events[3].container.rules[0].adopt``, or the quota's name for a 413 quota refusal)."""

    def __init__(self, message: str, *, status: int, code: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from our API; the caller's own backoff applies


def access_headers(client_id: str | None, client_secret: str) -> dict[str, str]:
    """The headers of a Cloudflare Access service token (none without one)."""
    if not client_id:
        return {}
    return {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": client_secret}


class MasterClient:
    """``headers`` go on every request besides the key: a Cloudflare Access service token when the master is behind
    Access (``CF-Access-Client-Id`` / ``CF-Access-Client-Secret``), which Cloudflare checks before the API sees it."""

    def __init__(
        self, base_url: str, key: str, *, timeout: float = 30.0, headers: Mapping[str, str] | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self._headers = dict(headers or {})
        self.agent_id: str | None = None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # An idle connection is kept longer than the heartbeat interval (15 s): with aiohttp's default of 15 s it
            # expired just before each heartbeat, which then paid a new TCP connection here and in the API. Kept below
            # the API's own keep-alive (aiohttp's server: 75 s), so the client is the one that closes it.
            connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        return self._session

    def _agent_path(self, suffix: str) -> str:
        if self.agent_id is None:
            raise MasterError("not registered yet")
        return f"/api/v1/agents/{self.agent_id}/{suffix}"

    async def _call(
        self,
        method: str,
        path: str,
        body: Any,
        response_type: type[R],
        *,
        params: dict[str, str] | None = None,
        deadline: float | None = None,
        key: str | None = None,
    ) -> R:
        headers = {**self._headers, "Authorization": f"Bearer {key or self.key}"}
        data = None
        if body is not None:
            data = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method,
                self.base_url + path,
                data=data,
                headers=headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=deadline or self._timeout),
                # A redirect is never the API's answer: Cloudflare Access sends a caller without a valid service
                # token to its login page, whose 200 must not pass for the master's.
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                location = response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise MasterUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if status < 300:
            try:
                return msgspec.json.decode(raw, type=response_type)
            except msgspec.DecodeError as exc:
                raise MasterUnavailable(f"{method} {path}: unreadable response: {exc}") from exc
        if 300 <= status < 400:
            raise KeyRejected(
                f"{method} {path}: HTTP {status} redirect to {urlsplit(location).hostname or '?'}: {_NOT_THE_API}",
                status=status,
            )
        detail = _error_detail(raw)
        message = f"{method} {path}: HTTP {status}" + (f" {detail.code}: {detail.message}" if detail else "")
        if detail is not None and detail.field:
            message += f" (field {detail.field})"
        if status in (401, 403) and detail is None:
            message += f": {_NOT_THE_API}"
        if status in (401, 403):
            raise KeyRejected(message, status=status, code=detail.code if detail else "")
        if status == 429 or status >= 500:
            raise MasterUnavailable(message, retry_after=retry_after)
        raise RequestRejected(
            message, status=status, code=detail.code if detail else "", field=detail.field if detail else None
        )

    async def register(self, request: protocol.RegisterRequest) -> protocol.RegisterResponse:
        response = await self._call("POST", "/api/v1/agents/register", request, protocol.RegisterResponse)
        self.agent_id = response.agent_id
        return response

    async def send_events(
        self, events: tuple[protocol.AgentEvent, ...], starting: int | None = None
    ) -> protocol.EventBatchResponse:
        batch = protocol.EventBatch(events=events, starting=starting)
        return await self._call("POST", self._agent_path("events"), batch, protocol.EventBatchResponse)

    async def poll_commands(self, wait: float) -> list[PolledCommand]:
        batch = await self._call(
            "GET",
            self._agent_path("commands"),
            None,
            _RawCommandBatch,
            params={"wait": str(int(wait))},
            deadline=wait + 15,
        )
        return [_decode_command(envelope) for envelope in batch.commands]

    async def ack(
        self, command_id: str, ack: protocol.CommandAckRequest, *, key: str | None = None
    ) -> protocol.CommandAckResponse:
        return await self._call(
            "POST", self._agent_path(f"commands/{command_id}/ack"), ack, protocol.CommandAckResponse, key=key
        )

    async def heartbeat(self, request: protocol.HeartbeatRequest) -> protocol.HeartbeatResponse:
        return await self._call("POST", self._agent_path("heartbeat"), request, protocol.HeartbeatResponse)


# A refusal without the API's JSON error comes from something in front of it, most likely Cloudflare Access.
_NOT_THE_API = (
    "refused before the master (not the API's answer); behind Cloudflare Access, set CF_ACCESS_CLIENT_ID and "
    "CF_ACCESS_CLIENT_SECRET to a service token its policy allows"
)


def _error_detail(raw: bytes) -> protocol.ErrorDetail | None:
    try:
        return msgspec.json.decode(raw, type=protocol.ErrorResponse).error
    except msgspec.DecodeError:
        return None


class _RawEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    command_id: str
    command: msgspec.Raw
    deliveries: int = 1


class _RawCommandBatch(msgspec.Struct, frozen=True, kw_only=True):
    commands: tuple[_RawEnvelope, ...] = ()


class _TypeOnly(msgspec.Struct, kw_only=True):
    type: str = "?"


class PolledCommand(msgspec.Struct, frozen=True, kw_only=True):
    """One delivered command: decoded, or (for a type this agent does not know) the reason it could not be."""

    command_id: str
    type: str
    command: CommandMessage | None = None
    error: str | None = None
    deliveries: int = 1


def _decode_command(envelope: _RawEnvelope) -> PolledCommand:
    # Decoded one by one so that a command type newer than this agent is acked with an error, not a poll loop crash.
    try:
        kind = msgspec.json.decode(envelope.command, type=_TypeOnly).type
    except msgspec.DecodeError:
        kind = "?"
    try:
        command = msgspec.json.decode(envelope.command, type=CommandMessage)
    except msgspec.DecodeError as exc:
        return PolledCommand(
            command_id=envelope.command_id,
            type=kind,
            error=f"unsupported or invalid command {kind!r}: {exc}",
            deliveries=envelope.deliveries,
        )
    return PolledCommand(command_id=envelope.command_id, type=kind, command=command, deliveries=envelope.deliveries)
