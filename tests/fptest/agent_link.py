"""A scripted master client for the agent's link and loops, and a link around it: no network, no master process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from flareport_agent.client import MasterClient, MasterError, PolledCommand
from flareport_agent.link import LinkTiming, MasterLink
from flareport_common.protocol import (
    AgentEvent,
    CommandAckRequest,
    CommandAckResponse,
    EventBatchResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)

# Short enough that a test waits milliseconds for a retry or a slow re-register.
FAST_LINK = LinkTiming(reregister_seconds=0.02, register_backoff_max=0.02, backoff_initial=0.01, backoff_max=0.02)

Send = Callable[[tuple[AgentEvent, ...]], Awaitable[EventBatchResponse]]


async def _accept_all(batch: tuple[AgentEvent, ...]) -> EventBatchResponse:
    return EventBatchResponse(accepted=len(batch))


class ScriptedClient(MasterClient):
    """Each call first takes the next failure queued for it in ``failures[call]`` (raised), else answers; every
    call is recorded in ``calls`` by name."""

    def __init__(self, send: Send = _accept_all) -> None:
        super().__init__("http://127.0.0.1:9", "test-key")
        self.send = send
        self.calls: list[str] = []
        self.failures: dict[str, list[MasterError]] = {}
        self.acks: list[tuple[str, CommandAckRequest]] = []
        self.starting: list[int | None] = []  # each batch's coalescing hint (EventBatch.starting)

    def fail(self, call: str, *errors: MasterError) -> None:
        self.failures.setdefault(call, []).extend(errors)

    def _next(self, call: str) -> None:
        self.calls.append(call)
        queued = self.failures.get(call)
        if queued:
            raise queued.pop(0)

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        self._next("register")
        self.agent_id = "agent-1"
        return RegisterResponse(agent_id="agent-1", status="active")

    async def send_events(self, events: tuple[AgentEvent, ...], starting: int | None = None) -> EventBatchResponse:
        self._next("events")
        self.starting.append(starting)
        return await self.send(events)

    async def poll_commands(self, wait: float) -> list[PolledCommand]:
        self._next("commands")
        return []

    async def ack(self, command_id: str, ack: CommandAckRequest, *, key: str | None = None) -> CommandAckResponse:
        self._next("ack")
        self.acks.append((command_id, ack))
        return CommandAckResponse(acked=True)

    async def heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        self._next("heartbeat")
        return HeartbeatResponse(status="active", server_time=datetime.now(UTC))


def scripted_link(
    client: ScriptedClient,
    *,
    registered: Callable[[RegisterResponse, bool], None] | None = None,
    timing: LinkTiming = FAST_LINK,
) -> MasterLink:
    return MasterLink(client, lambda: RegisterRequest(display_name="test"), registered=registered, timing=timing)
