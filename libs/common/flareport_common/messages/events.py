"""The events stream: what agents report (through the API, which stamps the authenticated agent id).

Events that change an agent's inventory carry the agent's own sequence number ``seq`` (strictly increasing
per agent). The reconciler ignores an inventory event whose ``seq`` is not newer than the last one it applied
for that agent, so replicas consuming in any order converge on the same state.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from flareport_common.messages.base import Message
from flareport_common.messages.rules import ContainerInfo
from flareport_common.messages.trace import Trace

StopAction = Literal["stop", "die", "kill", "destroy", "pause"]

MAX_STARTING = 100_000
# How many labelled containers the agent had created and not yet started when it sent the event's batch
# (``protocol.EventBatch.starting``): more changes are on their way while it is above 0. Stamped by the API from the
# batch (an agent's per-event value is replaced); None when the agent did not say. A hint for coalescing only.
Starting = Annotated[int, msgspec.Meta(ge=0, le=MAX_STARTING)]


class AgentRegistered(Message, frozen=True, kw_only=True, tag="agent_registered"):
    agent_id: str
    display_name: str
    hostname: str = ""
    version: str = ""
    capabilities: tuple[str, ...] = ()
    # The agent's claim to an enrolment the control plane may have lost (see ``RegisterRequest``).
    tunnel_id: str | None = None
    tunnel_token_sha256: str | None = None


class ContainerStart(Message, frozen=True, kw_only=True, tag="container_start"):
    """A labelled container is running (started, unpaused, renamed or relabelled): its rules as they are now."""

    agent_id: str
    seq: int
    container: ContainerInfo
    trace: Trace | None = None  # where the event was when (messages.trace); never decides anything
    starting: Starting | None = None


class ContainerStop(Message, frozen=True, kw_only=True, tag="container_stop"):
    """A container stopped being served (stop, kill, destroy, pause): its rules start their grace period."""

    agent_id: str
    seq: int
    container_id: str
    name: str = ""
    action: StopAction = "stop"
    trace: Trace | None = None  # where the event was when (messages.trace); never decides anything
    starting: Starting | None = None


class ContainerDie(Message, frozen=True, kw_only=True, tag="container_die"):
    """A container exited on its own; treated like a stop, with the exit code kept for the operator."""

    agent_id: str
    seq: int
    container_id: str
    name: str = ""
    exit_code: int | None = None
    trace: Trace | None = None  # where the event was when (messages.trace); never decides anything
    starting: Starting | None = None


class Inventory(Message, frozen=True, kw_only=True, tag="inventory"):
    """A full snapshot of the agent's labelled running containers; replaces what the reconciler knew."""

    agent_id: str
    seq: int
    containers: tuple[ContainerInfo, ...] = ()
    trace: Trace | None = None  # where the event was when (messages.trace); never decides anything
    starting: Starting | None = None


class TunnelState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The agent's local cloudflared container as the engine reports it."""

    container_state: str = "absent"
    image: str = ""
    restarts: int = 0
    tunnel_id: str | None = None


class Heartbeat(Message, frozen=True, kw_only=True, tag="heartbeat"):
    """Liveness; ``occurred_at`` is stamped by the API, the agent's clock is never trusted."""

    agent_id: str
    tunnel: TunnelState = TunnelState()
    docker_reachable: bool = True
    agent_version: str = ""


class TunnelStatus(Message, frozen=True, kw_only=True, tag="tunnel_status"):
    agent_id: str
    tunnel: TunnelState


class CommandAck(Message, frozen=True, kw_only=True, tag="command_ack"):
    """The agent's answer to one command: done (``ok``) or failed with a reason."""

    agent_id: str
    command_id: str
    command_type: str = ""
    ok: bool
    error: str | None = None
    result: dict[str, Any] = msgspec.field(default_factory=dict)


EventMessage = (
    AgentRegistered | ContainerStart | ContainerStop | ContainerDie | Inventory | Heartbeat | TunnelStatus | CommandAck
)
