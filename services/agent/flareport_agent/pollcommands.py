"""The command long-poll loop: fetch through the API, execute, remember, ack.

``GET .../commands?wait=N`` holds the request until a command arrives or N seconds pass. A command is remembered
as done (in the state file) before its ack is sent, so a crash between the two — or a lost ack — makes the master
redeliver it and the agent answer with the remembered result instead of executing twice. A command type this agent
does not know is acked with an error (the master dead-letters or reports it) and never stops the loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec

from flareport_agent.client import KeyRejected, MasterUnavailable, PolledCommand, RequestRejected
from flareport_agent.commands import Outcome
from flareport_agent.metrics import COMMANDS, MASTER_ERRORS
from flareport_agent.state import remember_command
from flareport_common.backoff import Backoff
from flareport_common.logs import get_logger
from flareport_common.protocol import CommandAckRequest

if TYPE_CHECKING:
    from flareport_agent.agent import Agent

log = get_logger("flareport.agent.commands")
ACK_ATTEMPTS = 5


class CommandPoller:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.backoff = Backoff(initial=0.2, maximum=30.0)

    async def run(self) -> None:
        while True:
            await self.agent.wait_link()
            try:
                commands = await self.agent.client.poll_commands(self.agent.poll_wait_seconds)
            except MasterUnavailable as exc:
                MASTER_ERRORS.labels(call="commands", kind="unavailable").inc()
                delay = exc.retry_after if exc.retry_after is not None else self.backoff.next()
                log.debug("command poll failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                continue
            except KeyRejected as exc:
                MASTER_ERRORS.labels(call="commands", kind="key_rejected").inc()
                await self.agent.on_key_rejected(exc)
                continue
            except RequestRejected as exc:
                MASTER_ERRORS.labels(call="commands", kind="rejected").inc()
                log.error("command poll rejected", error=str(exc))
                await asyncio.sleep(self.backoff.next())
                continue
            self.backoff.reset()
            for polled in commands:
                await self.handle(polled)

    async def handle(self, polled: PolledCommand) -> None:
        state = self.agent.state
        done = state.done_commands.get(polled.command_id)
        if done is not None:
            log.info("command already executed; acking again", command_id=polled.command_id, type=polled.type)
            await self._ack(polled, msgspec.convert(done, CommandAckRequest))
            return
        if polled.command is None:
            outcome = Outcome(CommandAckRequest(ok=False, error=polled.error or "undecodable command"))
            COMMANDS.labels(type="unknown", outcome="unsupported").inc()
            log.warning("unsupported command", command_id=polled.command_id, type=polled.type, error=polled.error)
        else:
            log.info("executing command", command_id=polled.command_id, type=polled.type)
            outcome = await self.agent.executor.execute(polled.command)
            COMMANDS.labels(type=polled.type, outcome="ok" if outcome.ack.ok else "error").inc()
        remember_command(state, polled.command_id, msgspec.to_builtins(outcome.ack))
        self.agent.save_state()
        await self._ack(polled, outcome.ack)
        if outcome.after_ack is not None:
            outcome.after_ack()

    async def _ack(self, polled: PolledCommand, ack: CommandAckRequest) -> None:
        backoff = Backoff(initial=0.2, maximum=5.0)
        for attempt in range(1, ACK_ATTEMPTS + 1):
            try:
                await self.agent.client.ack(polled.command_id, ack)
                return
            except MasterUnavailable as exc:
                MASTER_ERRORS.labels(call="ack", kind="unavailable").inc()
                if attempt == ACK_ATTEMPTS:
                    log.warning("ack not delivered; the master will redeliver", command_id=polled.command_id)
                    return
                await asyncio.sleep(exc.retry_after if exc.retry_after is not None else backoff.next())
            except (KeyRejected, RequestRejected) as exc:
                MASTER_ERRORS.labels(call="ack", kind="rejected").inc()
                log.warning("ack rejected", command_id=polled.command_id, error=str(exc))
                return
