"""An engine event's trace as the agent starts it: the engine's own time of the event and when the agent read it."""

from __future__ import annotations

from typing import Any

import pytest

from flareport_agent import watcher
from flareport_agent.agent import traced
from flareport_common.messages.events import ContainerStop, TunnelState, TunnelStatus


@pytest.mark.parametrize(
    ("raw", "engine_us"),
    [
        ({"timeNano": 1_700_000_000_123_456_789, "time": 1_700_000_000}, 1_700_000_000_123_456),
        ({"time": 1_700_000_000}, 1_700_000_000_000_000),
        ({}, 0),
        ({"timeNano": "soon"}, 0),
    ],
)
def test_the_engine_time_is_taken_from_time_nano_else_time(raw: dict[str, Any], engine_us: int) -> None:
    event = traced(ContainerStop(agent_id="", seq=0, container_id="c"), watcher.Event(raw, 1_700_000_001_000_000))
    assert isinstance(event, ContainerStop) and event.trace is not None
    assert (event.trace.engine_us, event.trace.agent_us) == (engine_us, 1_700_000_001_000_000)


def test_a_tunnel_status_carries_no_trace() -> None:
    status = TunnelStatus(agent_id="", tunnel=TunnelState())
    assert traced(status, watcher.Event({}, 1)) is status
