"""A tunnels read model as the dns-worker and the reconciler would leave it, for the API, CLI and UI tests.

Two tunnels: ``OURS``, created by Flareport and run by the active agent ``a1`` (one connector), and ``FOREIGN``, made
in the dashboard (listed, no actions). ``queue`` only queues the writes, so it serves a sync or an async pipeline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from flareport_common import tunnelview
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.messages.events import TunnelState
from flareport_common.readmodel import AgentRecord
from flareport_common.tunnelview import Connector, TunnelInfo, TunnelsDocument

OURS = "11111111-1111-4111-8111-111111111111"
FOREIGN = "22222222-2222-4222-8222-222222222222"
IMAGE = "cloudflare/cloudflared:2025.9.0"
ORIGIN_IP = "203.0.113.7"
LISTED_SECONDS_AGO = 30


def queue(pipe: Any, keys: Keys) -> None:
    opened = utcnow() - timedelta(hours=2)
    document = TunnelsDocument(
        checked_at=utcnow() - timedelta(seconds=LISTED_SECONDS_AGO),
        tunnels=(
            TunnelInfo(
                id=OURS,
                name="flareport-a1",
                status="healthy",
                remote_config=True,
                connectors=(
                    Connector(id="c1", version="2025.9.0", origin_ip=ORIGIN_IP, opened_at=opened, connections=4),
                ),
            ),
            TunnelInfo(id=FOREIGN, name="dashboard-made", status="down"),
        ),
    )
    record = AgentRecord(
        agent_id="a1", display_name="web host", status="active", tunnel_id=OURS, tunnel=TunnelState(image=IMAGE)
    )
    pipe.set(keys.cf_tunnels, tunnelview.encode(document))
    pipe.set(keys.agent("a1"), msgspec.json.encode(record))
    pipe.sadd(keys.agents_index, "a1")
    pipe.hset(keys.tunnel_agents, mapping={OURS: "a1", FOREIGN: "a2"})
    pipe.sadd(keys.cf_created_tunnels, OURS)
