"""Per-agent command streams (``agent:{id}:commands``): what the control plane asks one agent to do.

Commands are idempotent on the agent side, and every command is acknowledged with a ``command_ack`` event;
unacknowledged commands are delivered again.
"""

from __future__ import annotations

from flareport_common.messages.base import Message


class StartTunnel(Message, frozen=True, kw_only=True, tag="start_tunnel"):
    """Run (or keep running) the local cloudflared with this tunnel's token, passed only in its environment."""

    tunnel_id: str
    # In the agent's command stream the token is absent and ``secret_ref`` names it (``flareport_common.parcels``);
    # the API puts it here only in its answer to the agent's long-poll.
    token: str = ""
    image: str | None = None
    secret_ref: str | None = None


class StopTunnel(Message, frozen=True, kw_only=True, tag="stop_tunnel"):
    pass


class RestartTunnel(Message, frozen=True, kw_only=True, tag="restart_tunnel"):
    """Replace the cloudflared container (e.g. with a new image); token from the last start_tunnel if absent."""

    image: str | None = None
    tunnel_id: str | None = None
    token: str | None = None


class ResyncInventory(Message, frozen=True, kw_only=True, tag="resync_inventory"):
    pass


class RotateKey(Message, frozen=True, kw_only=True, tag="rotate_key"):
    """Store this new agent key and use it from now on (the old one is revoked after the ack)."""

    key_id: str
    new_key: str = ""  # filled in by the API from ``secret_ref`` when it hands the command to the agent
    secret_ref: str | None = None


class Decommission(Message, frozen=True, kw_only=True, tag="decommission"):
    """Stop and remove the local cloudflared, report, then stop the agent."""


CommandMessage = StartTunnel | StopTunnel | RestartTunnel | ResyncInventory | RotateKey | Decommission
