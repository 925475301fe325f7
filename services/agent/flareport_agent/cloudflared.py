"""What the host's cloudflared container is: its name, ownership labels, network and command.

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
