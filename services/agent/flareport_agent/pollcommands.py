"""The command long-poll loop: fetch through the API, execute, remember, ack.

``GET .../commands?wait=N`` holds the request until a command arrives or N seconds pass. A command is remembered
as done (in the state file) before its ack is sent, so a crash between the two — or a lost ack — makes the master
redeliver it and the agent answer with the remembered result instead of executing twice. A command type this agent
does not know is acked with an error (the master dead-letters or reports it) and never stops the loop.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from flareport_agent.client import PolledCommand
from flareport_agent.commands import CommandExecutor, Outcome
from flareport_agent.link import MasterLink, Missed
from flareport_agent.linkpolicy import Reaction
from flareport_agent.metrics import COMMANDS
from flareport_agent.state import AgentState, remember_command
from flareport_common.logs import get_logger
from flareport_common.protocol import CommandAckRequest

log = get_logger("flareport.agent.commands")
ACK_ATTEMPTS = 5


class CommandPoller:
    """``poll_wait`` is read before every poll: the master says how long at registration."""

    def __init__(
        self,
        link: MasterLink,
        *,
        state: AgentState,
        executor: CommandExecutor,
        save: Callable[[], None],
        poll_wait: Callable[[], float],
    ) -> None:
        self.link = link
        self.state = state
        self.executor = executor
        self.save = save
        self.poll_wait = poll_wait

    async def run(self) -> None:
        while True:
            await self.link.opened()
            commands = await self.link.poll_commands(self.poll_wait())
            if isinstance(commands, Missed):
                continue  # the link waited as its policy says
            for polled in commands:
                await self.handle(polled)

    async def handle(self, polled: PolledCommand) -> None:
        done = self.state.done_commands.get(polled.command_id)
        if done is not None:
            log.info("command.repeated", command_id=polled.command_id, type=polled.type, hint="acked again")
            await self._ack(polled, msgspec.convert(done, CommandAckRequest))
            return
        if polled.command is None:
            outcome = Outcome(CommandAckRequest(ok=False, error=polled.error or "undecodable command"))
            COMMANDS.labels(type="unknown", outcome="unsupported").inc()
            log.warning("command.unsupported", command_id=polled.command_id, type=polled.type, error=polled.error)
        else:
            log.info("command.executing", command_id=polled.command_id, type=polled.type)
            outcome = await self.executor.execute(polled.command)
            COMMANDS.labels(type=polled.type, outcome="ok" if outcome.ack.ok else "error").inc()
        remember_command(self.state, polled.command_id, msgspec.to_builtins(outcome.ack))
        self.save()
        await self._ack(polled, outcome.ack)
        if outcome.after_ack is not None:
            outcome.after_ack()

    async def _ack(self, polled: PolledCommand, ack: CommandAckRequest) -> None:
        for attempt in range(1, ACK_ATTEMPTS + 1):
            last = attempt == ACK_ATTEMPTS
            answer = await self.link.ack(polled.command_id, ack, wait=not last)
            if not isinstance(answer, Missed) or answer.reaction is not Reaction.RETRY:
                return  # acked, or refused (logged by the link): the master redelivers what it did not get
            if last:
                log.warning("command.ack_undelivered", command_id=polled.command_id, hint="the master will redeliver")
