"""Admin actions on tunnels: restart or redeploy an agent's cloudflared, and list the account's tunnels again now.

The API checked the request (the tunnel is one Flareport created and an agent runs; the image is the one the agent
runs); the reconciler, the only writer of agent commands and Cloudflare jobs, sends them. A ``restart_tunnel``
names no tunnel, so the agent replaces the cloudflared it runs with the token it holds; the agent checks the image
again (``flareport_agent.images``) and its ack, with the outcome, lands in the agent's command history.
"""

from __future__ import annotations

import structlog

from flareport_common.messages.cfjobs import RefreshTunnels
from flareport_common.messages.commands import RestartTunnel
from flareport_common.messages.intents import TunnelRestartRequested, TunnelsRefreshRequested
from flareport_reconciler.emit import Emitter

log = structlog.get_logger("flareport.reconciler.tunnels")


class TunnelCases:
    def __init__(self, emit: Emitter) -> None:
        self._emit = emit

    async def restart_requested(self, message: TunnelRestartRequested) -> None:
        log.info("tunnel.restart_requested", agent_id=message.agent_id, tunnel_id=message.tunnel_id)
        await self._emit.command(message.agent_id, RestartTunnel(image=message.image))

    async def refresh_requested(self, message: TunnelsRefreshRequested) -> None:
        await self._emit.job(RefreshTunnels())
