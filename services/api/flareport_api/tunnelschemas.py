"""Bodies of the tunnel routes (``admin_tunnels``): the account's tunnels as the dns-worker last listed them, joined
with which agent runs each and whether Flareport created it, and the restart/redeploy requests.

Every field is written (no omitted defaults), so a client reading ``connections`` need not know that a missing one
means zero.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

TunnelAction = Literal["restart", "redeploy"]


class TunnelConnectorView(msgspec.Struct, frozen=True, kw_only=True):
    """One cloudflared process connected to the tunnel."""

    id: str
    version: str = ""
    arch: str = ""
    run_at: datetime | None = None
    origin_ip: str = ""
    opened_at: datetime | None = None
    connections: int = 0
    colos: tuple[str, ...] = ()
    pending_reconnect: bool = False


class TunnelView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    status: str
    created_at: datetime | None = None
    conns_active_at: datetime | None = None
    conns_inactive_at: datetime | None = None
    remote_config: bool = False
    connectors: tuple[TunnelConnectorView, ...] = ()
    created_by_flareport: bool = False
    agent_id: str | None = None
    agent_name: str | None = None
    # The cloudflared image the agent reports running: the only image a redeploy may name.
    agent_image: str | None = None
    # What an admin may do with it now; ``actions_note`` says why not when it is empty.
    actions: tuple[TunnelAction, ...] = ()
    actions_note: str | None = None


class TunnelList(msgspec.Struct, frozen=True, kw_only=True):
    """``checked_at``: when the dns-worker last listed the account's tunnels (``age_seconds`` ago); a listing that
    failed since keeps these tunnels and says why in ``error`` (at ``failed_at``)."""

    tunnels: tuple[TunnelView, ...] = ()
    checked_at: datetime | None = None
    age_seconds: float | None = None
    error: str | None = None
    failed_at: datetime | None = None


class TunnelDetail(msgspec.Struct, frozen=True, kw_only=True):
    tunnel: TunnelView
    checked_at: datetime | None = None
    age_seconds: float | None = None
    error: str | None = None


class RedeployRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Recreate the agent's cloudflared from ``image`` (default: the image it runs), which must be the agent's own
    configured CLOUDFLARED_IMAGE: the agent runs no other."""

    image: str | None = None
