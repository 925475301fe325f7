"""The agent's link to the master: registration, the gate that key rejection closes, and the error policy applied.

Every call to the master goes through ``MasterLink.call`` (or one of its typed wrappers), which applies the table
of ``linkpolicy.py`` in one place: count the failure in ``flareport_agent_master_errors_total``, log it as
``master.call_failed`` (with ``call`` and ``kind``), and react — wait and let the caller try again, close the gate,
or hand the failure back. A failed call returns ``Missed`` instead of raising, so no loop of the agent ever dies of
an answer of the master.

The gate opens when a registration succeeds and closes when the master rejects the key (401/403), or refuses a
registration as invalid. While it is closed no call leaves the agent except a re-register attempt every
``reregister_seconds``; the closing is logged once (``master.key_rejected``, or ``master.register_rejected``).
Docker watching and cloudflared carry on meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from flareport_agent.client import (
    KeyRejected,
    MasterClient,
    MasterError,
    MasterUnavailable,
    PolledCommand,
    RequestRejected,
)
from flareport_agent.linkpolicy import Call, Kind, Level, Reaction, decide
from flareport_agent.metrics import MASTER_ERRORS
from flareport_common.backoff import Backoff
from flareport_common.logs import get_logger
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

log = get_logger("flareport.agent.link")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class LinkTiming:
    reregister_seconds: float = 60.0
    register_backoff_max: float = 30.0
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    ack_backoff_max: float = 5.0


@dataclass(frozen=True, slots=True)
class Missed:
    """A call that got no answer; the link has already counted, logged and waited as the policy says."""

    error: MasterError
    reaction: Reaction


def kind_of(error: MasterError) -> Kind:
    if isinstance(error, KeyRejected):
        return "key_rejected"
    if isinstance(error, RequestRejected):
        return "rejected"
    return "unavailable"  # MasterUnavailable, or a call made before the agent knew its id


Registered = Callable[[RegisterResponse, bool], None]


class MasterLink:
    """Owns the client and the gate. ``registration`` builds each registration's request (it names the tunnel the
    agent runs now); ``registered(response, again)`` is told of every success, ``again`` for every one but the
    start-up registration (``connect``): the master may have missed changes since, so the agent resends its
    inventory then."""

    def __init__(
        self,
        client: MasterClient,
        registration: Callable[[], RegisterRequest],
        *,
        registered: Registered | None = None,
        timing: LinkTiming | None = None,
    ) -> None:
        self.client = client
        self.timing = timing or LinkTiming()
        self._registration = registration
        self._registered = registered or (lambda response, again: None)
        self._gate = asyncio.Event()
        self._revoked = False
        self._reregistering: asyncio.Task[None] | None = None
        t = self.timing
        self._backoffs: dict[Call, Backoff] = {
            "register": Backoff(initial=t.backoff_initial, maximum=t.register_backoff_max),
            "events": Backoff(initial=t.backoff_initial, maximum=t.backoff_max),
            "commands": Backoff(initial=t.backoff_initial, maximum=t.backoff_max),
            "ack": Backoff(initial=t.backoff_initial, maximum=t.ack_backoff_max),
            "heartbeat": Backoff(initial=t.backoff_initial, maximum=t.backoff_max),
        }

    @property
    def is_open(self) -> bool:
        return self._gate.is_set()

    async def opened(self) -> None:
        """Return once the master takes this agent's key (at once when it does now)."""
        await self._gate.wait()

    def use_key(self, key: str) -> None:
        self.client.key = key
        log.info("master.key_rotated")

    async def close(self) -> None:
        if self._reregistering is not None:
            self._reregistering.cancel()
            await asyncio.gather(self._reregistering, return_exceptions=True)
        await self.client.close()

    async def connect(self) -> None:
        """Register, retrying while the master is away; returns once registered (after a rejected key: once the
        slow re-register got through)."""
        while True:
            answer = await self.call("register", lambda: self._register(again=False))
            if not isinstance(answer, Missed) or self.is_open:
                return

    async def register_again(self) -> RegisterResponse | Missed:
        """One registration attempt now (the master lost this agent's record); failures follow the policy."""
        return await self.call("register", lambda: self._register(again=True), wait=False)

    async def send_events(
        self, batch: tuple[AgentEvent, ...], starting: int | None = None
    ) -> EventBatchResponse | Missed:
        return await self.call("events", lambda: self.client.send_events(batch, starting))

    async def poll_commands(self, wait: float) -> list[PolledCommand] | Missed:
        return await self.call("commands", lambda: self.client.poll_commands(wait))

    async def ack(self, command_id: str, ack: CommandAckRequest, *, wait: bool = True) -> CommandAckResponse | Missed:
        return await self.call(
            "ack", lambda: self.client.ack(command_id, ack), wait=wait, fields={"command_id": command_id}
        )

    async def heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse | Missed:
        return await self.call("heartbeat", lambda: self.client.heartbeat(request))

    async def call(
        self,
        call: Call,
        operation: Callable[[], Awaitable[R]],
        *,
        wait: bool = True,
        fields: Mapping[str, object] | None = None,
    ) -> R | Missed:
        """Make one call through the gate (a registration does not wait for it). On failure: count, log and react
        as the policy says; ``wait=False`` skips the waiting (a caller making its last attempt)."""
        if call != "register":
            await self._gate.wait()
        backoff = self._backoffs[call]
        try:
            answer = await operation()
        except MasterError as error:
            return await self._failed(call, error, backoff, wait=wait, fields=fields or {})
        backoff.reset()
        return answer

    async def _failed(
        self, call: Call, error: MasterError, backoff: Backoff, *, wait: bool, fields: Mapping[str, object]
    ) -> Missed:
        kind = kind_of(error)
        rule = decide(call, kind)
        MASTER_ERRORS.labels(call=call, kind=kind).inc()
        if rule.reaction is Reaction.REVOKE:
            self._revoke(call, kind, error, rule.level)
            if wait:
                await self._gate.wait()
            return Missed(error, rule.reaction)
        delay: float | None = None
        if rule.reaction is Reaction.RETRY and wait:
            retry_after = error.retry_after if isinstance(error, MasterUnavailable) else None
            delay = retry_after if retry_after is not None else backoff.next()
        else:
            backoff.reset()  # this attempt is over: the caller's next one starts afresh
        extra = {} if delay is None else {"retry_in": round(delay, 2)}
        getattr(log, rule.level)("master.call_failed", call=call, kind=kind, error=str(error), **fields, **extra)
        if delay is not None:
            await asyncio.sleep(delay)
        return Missed(error, rule.reaction)

    def _revoke(self, call: Call, kind: Kind, error: MasterError, level: Level) -> None:
        if self._revoked:
            return  # said when the gate closed
        self._revoked = True
        self._gate.clear()
        # The line an operator looks for: one per closing, whichever loop's call found out first.
        getattr(log, level)(
            "master.key_rejected" if kind == "key_rejected" else f"master.{call}_rejected",
            call=call,
            error=str(error),
            reregister_in=self.timing.reregister_seconds,
            hint="the master refused this agent's key or registration (revoked or unknown key); all calls stopped "
            f"except a re-register attempt every {self.timing.reregister_seconds}s. Set a valid "
            "FLAREPORT_API_KEY to recover",
        )
        self._reregistering = asyncio.create_task(self._reregister_slowly())

    async def _reregister_slowly(self) -> None:
        while not self.is_open:
            await asyncio.sleep(self.timing.reregister_seconds)
            try:
                await self._register(again=True)
            except MasterError as error:  # said once when the gate closed; counted at every attempt
                MASTER_ERRORS.labels(call="register", kind=kind_of(error)).inc()
                log.debug("master.reregister_failed", error=str(error))

    async def _register(self, *, again: bool) -> RegisterResponse:
        response = await self.client.register(self._registration())
        self._registered(response, again)
        log.info("master.registered", agent_id=response.agent_id, status=response.status)
        self._revoked = False
        self._gate.set()
        return response
