"""What the host's cloudflared container is: its name, ownership labels, network and command.

The network (``CLOUDFLARED_NETWORK_NAME``) and the metrics port (``CLOUDFLARED_METRICS_PORT``) are the agent's
settings; these are their defaults, and ``command`` the command line for a metrics port.

Two modules need the same answer: ``tunnel`` creates the container through the Docker SDK, and the socket guard
(``sockguard``, pure) lets through only requests for a container of exactly this shape. Kept apart from both so
the guard's decisions import no Docker SDK.
"""

from __future__ import annotations

MANAGED_LABEL = "flareport.managed"
MANAGED_VALUE = "cloudflared"
TUNNEL_ID_LABEL = "flareport.tunnel_id"
CONFIG_LABEL = "flareport.config_hash"
CONTAINER_NAME = "flareport-cloudflared"
NETWORK = "cloudflare-net"
COMMAND = ("tunnel", "--no-autoupdate", "run")


def command(metrics_port: int | None) -> tuple[str, ...]:
    """cloudflared's command line. With a metrics port its Prometheus endpoint listens on every address *inside*
    its container (reachable from the cloudflared network, never published on the host); without one, cloudflared
    keeps its own default (loopback inside the container)."""
    if metrics_port is None:
        return COMMAND
    return ("tunnel", "--no-autoupdate", "--metrics", f"0.0.0.0:{metrics_port}", "run")
