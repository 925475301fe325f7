"""External-cloudflared mode (``FLAREPORT_EXTERNAL_CLOUDFLARED=true``): the operator runs cloudflared for this
agent's tunnel somewhere else (another host, a Kubernetes pod, a system service), and the agent never creates,
replaces or removes one.

The agent still publishes its containers' rules to the tunnel it is enrolled on: the master routes that tunnel's
ingress to them whoever runs its connector. It takes the place of ``TunnelManager`` and touches no engine:
``start_tunnel`` and ``restart_tunnel`` are answered with the action ``external`` (the tunnel id and token are
still saved, so a registration after the control plane lost its data names the tunnel as usual), ``stop_tunnel``
the same (the operator's cloudflared is theirs to stop), and the state it reports, in every heartbeat and
``tunnel_status``, is ``external``: what the agent's page shows instead of a container's state.
"""

from __future__ import annotations

import docker

from flareport_agent.tunnel import TunnelManager, TunnelResult
from flareport_common.messages.events import TunnelState

EXTERNAL = "external"
DETAIL = (
    "external cloudflared: this agent runs no cloudflared (FLAREPORT_EXTERNAL_CLOUDFLARED=true); the tunnel is "
    "served by the cloudflared its operator runs with the tunnel's token, and its rules are published to it"
)


def _no_engine() -> docker.DockerClient:
    raise RuntimeError("external cloudflared: the agent does not manage cloudflared on this engine")


class ExternalCloudflared(TunnelManager):
    """The tunnel operations of ``TunnelManager`` for a cloudflared the agent does not run: none reaches the
    engine (its client factory refuses, should anything ever ask)."""

    def __init__(self) -> None:
        super().__init__(_no_engine)

    def ensure(self, tunnel_id: str, token: str, image: str, *, force: bool = False) -> TunnelResult:
        return TunnelResult(EXTERNAL, detail=DETAIL)

    def stop(self) -> TunnelResult:
        return TunnelResult(EXTERNAL, detail=DETAIL)

    def state(self, tunnel_id: str | None = None) -> TunnelState:
        return TunnelState(container_state=EXTERNAL, tunnel_id=tunnel_id)
