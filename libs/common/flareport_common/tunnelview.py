"""The read model of the account's tunnels: what the dns-worker last listed from Cloudflare (``Keys.cf_tunnels``).

Only the dns-worker calls Cloudflare, so it lists the account's tunnels and their connectors (periodically, and
when an admin asks through a ``refresh_tunnels`` job) and stores the answer here as one JSON document; the API
serves it. The document holds Cloudflare's view only. Which agent runs a tunnel (``Keys.tunnel_agents``, the
reconciler's) and whether Flareport created it (``Keys.cf_created_tunnels``) are joined in by the reader at read
time, so they are never older than those sets.

``checked_at`` is when the list was last read completely; a failed listing keeps the tunnels of the last good one
and says why in ``error`` (with ``failed_at``), so a reader can show stale data as stale rather than nothing.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class Connector(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One cloudflared process connected to a tunnel (Cloudflare's "client"), with its edge connections."""

    id: str
    version: str = ""
    arch: str = ""
    run_at: datetime | None = None
    origin_ip: str = ""
    opened_at: datetime | None = None  # the oldest of its open connections
    connections: int = 0
    colos: tuple[str, ...] = ()
    # Cloudflare still tracks the connections of a connector that stopped (for minutes): not serving traffic.
    pending_reconnect: bool = False


class TunnelInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    name: str
    status: str = "inactive"  # Cloudflare's: inactive (never connected), healthy, degraded, down
    created_at: datetime | None = None
    conns_active_at: datetime | None = None
    conns_inactive_at: datetime | None = None
    remote_config: bool = False
    connectors: tuple[Connector, ...] = ()


class TunnelsDocument(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    checked_at: datetime | None = None
    tunnels: tuple[TunnelInfo, ...] = ()
    error: str | None = None
    failed_at: datetime | None = None


_decoder = msgspec.json.Decoder(TunnelsDocument)


def decode(raw: bytes | str | None) -> TunnelsDocument:
    """The stored document, or an empty one when there is none yet (or it cannot be read)."""
    if raw is None:
        return TunnelsDocument()
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return TunnelsDocument()


def encode(document: TunnelsDocument) -> bytes:
    return msgspec.json.encode(document)
