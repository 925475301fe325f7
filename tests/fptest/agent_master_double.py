"""A test double of the master's agent API, built from ``flareport_common.protocol`` (the shared contract).

Serves the five agent routes over real HTTP on loopback, decodes every body with the shared schemas (so an agent
that drifts from the contract fails here), records what it received, and can be told to misbehave: go away
entirely (``stop``/``start`` on the same port), answer 401 (revoked key), 500, or 429 with ``Retry-After``.
Commands are queued with ``push``; a long poll returns every unacknowledged command (redelivery until acked, as the
real command stream does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from flareport_common import protocol
from flareport_common.health import bound_port
from flareport_common.messages.commands import CommandMessage
from flareport_common.messages.events import ContainerDie, ContainerStart, ContainerStop, Inventory


@dataclass
class MasterDouble:
    keys: set[str] = field(default_factory=lambda: {"agent-key-0123456789"})
    agent_id: str = "agent-1"
    status: protocol.AgentStatus = "active"
    # "ok", "unauthorized" (401 key_revoked), "error" (500), "throttle" (429 + Retry-After)
    mode: str = "ok"
    retry_after: float = 0.2
    reregister_once: bool = False
    registrations: list[protocol.RegisterRequest] = field(default_factory=list)
    events: list[protocol.AgentEvent] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # time.time() of each accepted event, for benchmarks
    batches: list[int] = field(default_factory=list)
    heartbeats: list[protocol.HeartbeatRequest] = field(default_factory=list)
    acks: dict[str, protocol.CommandAckRequest] = field(default_factory=dict)
    ack_keys: dict[str, str] = field(default_factory=dict)
    refused: int = 0
    polls: int = 0  # command polls answered or waiting
    refused_paths: list[str] = field(default_factory=list)
    last_seq: int = 0
    port: int | None = None
    _commands: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _new_command: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/agents/register", self._register)
        app.router.add_post("/api/v1/agents/{id}/events", self._events)
        app.router.add_get("/api/v1/agents/{id}/commands", self._poll)
        app.router.add_post("/api/v1/agents/{id}/commands/{cid}/ack", self._ack)
        app.router.add_post("/api/v1/agents/{id}/heartbeat", self._heartbeat)
        app.middlewares.append(self._faults)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        if self.port is None:
            self.port = bound_port(self._runner)

    async def stop(self) -> None:
        """Go away: the port refuses connections until ``start`` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what tests use ----------------------------------------------------------------------------------------
    def push(self, command: CommandMessage) -> str:
        command_id = f"{next(self._ids)}-0"
        self._commands[command_id] = (msgspec.json.encode(command), 0)
        self._new_command.set()
        return command_id

    def container_events(self) -> list[ContainerStart | ContainerStop | ContainerDie | Inventory]:
        return [e for e in self.events if isinstance(e, ContainerStart | ContainerStop | ContainerDie | Inventory)]

    async def inventory_seen(self) -> bool:
        return any(isinstance(e, Inventory) for e in self.events)

    def views(self) -> Iterator[dict[str, str]]:
        """container id -> name, as the master would conclude after each event so far (last writer wins). The
        same dict is updated in place between steps: copy what you keep."""
        state: dict[str, str] = {}
        for event in self.container_events():
            if isinstance(event, Inventory):
                state.clear()
                state.update((c.container_id, c.name) for c in event.containers)
            elif isinstance(event, ContainerStart):
                state[event.container.container_id] = event.container.name
            else:
                state.pop(event.container_id, None)
            yield state

    def running(self) -> dict[str, str]:
        """container id -> name, as the master would conclude from the events so far."""
        state: dict[str, str] = {}
        for view in self.views():
            state = view
        return dict(state)

    # -- handlers ----------------------------------------------------------------------------------------------
    @web.middleware
    async def _faults(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.mode == "error":
            self.refused += 1
            return _error(500, "internal", "the double was told to fail")
        if self.mode == "throttle":
            self.refused += 1
            response = _error(429, "rate_limited", "slow down")
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.mode == "unauthorized" or key not in self.keys:
            self.refused += 1
            self.refused_paths.append(request.path)
            return _error(401, "key_revoked", "agent key is revoked")
        if "id" in request.match_info and request.match_info["id"] != self.agent_id:
            return _error(403, "forbidden_agent", "not your agent id")
        return await handler(request)

    async def _register(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=protocol.RegisterRequest)
        self.registrations.append(body)
        return _json(
            protocol.RegisterResponse(
                agent_id=self.agent_id,
                status=self.status,
                last_seq=self.last_seq,
                heartbeat_interval_seconds=0.2,
                poll_wait_seconds=1.0,
            )
        )

    async def _events(self, request: web.Request) -> web.Response:
        try:
            batch = msgspec.json.decode(await request.read(), type=protocol.EventBatch)
        except msgspec.DecodeError as exc:
            return _error(422, "invalid_body", str(exc))
        accepted, duplicates = 0, []
        now = time.time()
        for event in batch.events:
            seq = getattr(event, "seq", None)
            if seq is not None and seq <= self.last_seq:
                duplicates.append(seq)
                continue
            if seq is not None:
                self.last_seq = seq
            self.events.append(event)
            self.received_at.append(now)
            accepted += 1
        self.batches.append(len(batch.events))
        return _json(
            protocol.EventBatchResponse(accepted=accepted, duplicates=tuple(duplicates), last_seq=self.last_seq)
        )

    async def _poll(self, request: web.Request) -> web.Response:
        self.polls += 1
        wait = float(request.query.get("wait", "0"))
        if not self._commands:
            self._new_command.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_command.wait(), timeout=wait)
        envelopes = []
        for command_id, (raw, deliveries) in list(self._commands.items()):
            self._commands[command_id] = (raw, deliveries + 1)
            envelopes.append(
                {"command_id": command_id, "command": msgspec.json.decode(raw), "deliveries": deliveries + 1}
            )
        return web.Response(body=msgspec.json.encode({"commands": envelopes}), content_type="application/json")

    async def _ack(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=protocol.CommandAckRequest)
        command_id = request.match_info["cid"]
        if command_id not in self._commands and command_id not in self.acks:
            return _error(404, "unknown_command", command_id)
        self._commands.pop(command_id, None)
        self.acks[command_id] = body
        self.ack_keys[command_id] = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return _json(protocol.CommandAckResponse(acked=True))

    async def _heartbeat(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=protocol.HeartbeatRequest)
        self.heartbeats.append(body)
        reregister, self.reregister_once = self.reregister_once, False
        return _json(
            protocol.HeartbeatResponse(status=self.status, server_time=datetime.now(UTC), reregister=reregister)
        )

    def push_raw(self, command: dict[str, object]) -> str:
        """A command this agent's schemas may not know (e.g. a newer type)."""
        command_id = f"{next(self._ids)}-0"
        self._commands[command_id] = (msgspec.json.encode(command), 0)
        self._new_command.set()
        return command_id


def _json(body: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    body = protocol.ErrorResponse(error=protocol.ErrorDetail(code=code, message=message))
    return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")
