"""Executing the master's commands, idempotently, and turning each into an ack.

A command may be delivered more than once (the master redelivers until it sees the ack). The ids of recently
executed commands are kept in the state file with their result, so a redelivered one is acked again with the same
result instead of running twice. The operations are idempotent on their own as well: ``start_tunnel`` with the same
token and image leaves a running cloudflared alone.

The tunnel id, token and image are saved *before* the container is touched: if the agent dies half-way, it finds
the wanted tunnel on disk at the next start and converges.

A command's image is only ever checked, never obeyed: the agent runs its configured ``CLOUDFLARED_IMAGE`` and refuses
(a failed ack naming both images) a command naming any other (``images.py``); a refused command changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import docker.errors

from flareport_agent.images import ImageNotAllowed, check_image
from flareport_agent.state import AgentState, key_hash
from flareport_agent.tunnel import EngineRefused, TunnelManager, TunnelResult
from flareport_common.logs import get_logger
from flareport_common.messages.commands import (
    CommandMessage,
    Decommission,
    RestartTunnel,
    ResyncInventory,
    RotateKey,
    StartTunnel,
    StopTunnel,
)
from flareport_common.protocol import CommandAckRequest

log = get_logger("flareport.agent.commands")


class CommandFailed(Exception):
    pass


@dataclass(slots=True)
class Outcome:
    ack: CommandAckRequest
    # Work to do only after the ack went out: switch to a rotated key, stop the agent after decommission.
    after_ack: Callable[[], None] | None = None


class CommandExecutor:
    def __init__(
        self,
        *,
        state: AgentState,
        save: Callable[[], None],
        in_tunnel: Callable[[Callable[[TunnelManager], Any]], Awaitable[Any]],
        default_image: str,
        configured_key: str,
        resync: Callable[[], None],
        tunnel_changed: Callable[[], None],
        use_key: Callable[[str], None],
        shutdown: Callable[[], None],
        external: bool = False,
    ) -> None:
        self.state = state
        self.external = external
        self.save = save
        self.in_tunnel = in_tunnel
        self.default_image = default_image
        self.configured_key = configured_key
        self.resync = resync
        self.tunnel_changed = tunnel_changed
        self.use_key = use_key
        self.shutdown = shutdown

    async def execute(self, command: CommandMessage) -> Outcome:
        try:
            result, after = await self._run(command)
        except CommandFailed as exc:
            return Outcome(CommandAckRequest(ok=False, error=str(exc)))
        except ImageNotAllowed as exc:  # a forged command, or a master that must not choose what runs here
            log.warning("command.refused", command=type(command).__name__, error=str(exc))
            return Outcome(CommandAckRequest(ok=False, error=str(exc)))
        except (EngineRefused, docker.errors.APIError) as exc:  # an answer from the engine, not a bug here
            log.error("command.failed", command=type(command).__name__, error=str(exc))
            return Outcome(CommandAckRequest(ok=False, error=str(exc)))
        except Exception as exc:  # anything else: report it with its traceback, the master may retry
            log.exception("command.failed", command=type(command).__name__)
            return Outcome(CommandAckRequest(ok=False, error=f"{type(exc).__name__}: {exc}"))
        return Outcome(CommandAckRequest(ok=True, result=result), after)

    async def _run(self, command: CommandMessage) -> tuple[dict[str, Any], Callable[[], None] | None]:
        match command:
            case StartTunnel():
                return await self._start(command.tunnel_id, command.token, command.image, force=False), None
            case RestartTunnel():
                tunnel_id = command.tunnel_id or self.state.tunnel_id
                token = command.token or self.state.tunnel_token
                if not tunnel_id or not token:
                    raise CommandFailed("restart_tunnel: no tunnel token known on this agent; send start_tunnel")
                return await self._start(tunnel_id, token, command.image, force=True), None
            case StopTunnel():
                self.state.tunnel_wanted = False
                self.save()
                result = await self.in_tunnel(lambda tm: tm.stop())
                self.tunnel_changed()
                return result.as_dict(), None
            case ResyncInventory():
                self.resync()
                return {"resync": "started"}, None
            case RotateKey():
                self.state.rotated_key = command.new_key
                self.state.rotated_from = key_hash(self.configured_key)
                self.save()
                new_key = command.new_key
                # Acked with the old key (the master revokes it only after this ack), then the new one is used.
                return {"key_id": command.key_id}, lambda: self.use_key(new_key)
            case Decommission():
                self.state.tunnel_wanted = False
                self.state.tunnel_token = None
                self.save()
                result = await self.in_tunnel(lambda tm: tm.stop())
                self.tunnel_changed()
                return {"tunnel": result.as_dict(), "agent": "stopping"}, self.shutdown
        raise CommandFailed(f"unsupported command {type(command).__name__}")

    async def _start(self, tunnel_id: str, token: str, requested: str | None, *, force: bool) -> dict[str, Any]:
        # Checked before anything is saved or touched: a refused command changes nothing on this host. An agent
        # with an external cloudflared runs no image, so none is refused.
        image = self.default_image if self.external else check_image(requested, self.default_image)
        self.state.tunnel_id = tunnel_id
        self.state.tunnel_token = token
        self.state.tunnel_image = image
        self.state.tunnel_wanted = True
        self.save()
        result: TunnelResult = await self.in_tunnel(lambda tm: tm.ensure(tunnel_id, token, image, force=force))
        log.info(f"cloudflared.{result.action}", tunnel_id=tunnel_id, image=image, container=result.container_id)
        self.tunnel_changed()
        return result.as_dict()
