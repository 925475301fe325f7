"""An agent's event trace through a real API: kept and stamped when sound, bounded when not, never a 500.

The agent's times serve the hop histograms only (``flareport_common.tracing``): one from the future or the distant
past, or an id that is not a plain token, is dropped and the event is accepted as any other; a field of the wrong
type is a 422 naming it, as for every other field of an event. Stages only the control plane sets are cleared.
"""

from __future__ import annotations

import re
from typing import Any

from flareport_common.messages import EventMessage
from flareport_common.messages.events import ContainerStart
from flareport_common.tracing import MAX_AHEAD_US, now_us
from fptest.api_helpers import stream_messages

from .conftest import Api


def start(seq: int, trace: dict[str, Any]) -> dict[str, Any]:
    rule = {"hostname": f"a{seq}.example.com", "service": "http://web:80"}
    info = {"container_id": f"c{seq}", "name": "web", "rules": [rule]}
    return {"type": "container_start", "agent_id": "x", "seq": seq, "container": info, "trace": trace}


async def started(api: Api) -> list[Any]:
    messages = await stream_messages(api.redis, api.keys.events, EventMessage)
    return [m for m in messages if isinstance(m, ContainerStart)]


async def enrolled(api: Api) -> tuple[str, str]:
    key = await api.new_key()
    return key, (await api.register(key))["agent_id"]


async def post(api: Api, key: str, agent_id: str, events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/events", json={"events": events}, headers=api.bearer(key)
    )
    body: dict[str, Any] = await response.json()
    return response.status, body


async def metric(api: Api, pattern: str) -> float:
    text = await (await api.client.get("/metrics")).text()
    found = re.search("^" + re.escape(pattern) + r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_sound_trace_is_kept_stamped_and_observed(api: Api) -> None:
    key, agent_id = await enrolled(api)
    hops = await metric(api, 'flareport_trace_hop_seconds_count{hop="agent_to_api"}')
    agent_us = now_us() - 3000
    sent = {"id": "t-1", "engine_us": agent_us - 1000, "agent_us": agent_us, "reconciler_us": 5, "committed_us": 6}
    before = now_us()
    status, _ = await post(api, key, agent_id, [start(1, sent)])
    assert status == 200
    [event] = await started(api)
    trace = event.trace
    assert (trace.id, trace.engine_us, trace.agent_us) == ("t-1", agent_us - 1000, agent_us), "the agent's times"
    assert before <= trace.api_us <= now_us(), "stamped with the API's clock when accepted"
    assert (trace.reconciler_us, trace.committed_us) == (0, 0), "stages only the control plane sets are cleared"
    assert await metric(api, 'flareport_trace_hop_seconds_count{hop="agent_to_api"}') == hops + 1


async def test_out_of_bounds_times_and_ids_are_dropped_not_refused(api: Api) -> None:
    key, agent_id = await enrolled(api)
    future = now_us() + 10 * MAX_AHEAD_US
    status, body = await post(api, key, agent_id, [
        start(1, {"id": "x" * 65, "engine_us": future, "agent_us": future}),
        start(2, {"agent_us": 1, "engine_us": 2**62}),
        start(3, {"id": "bad id\n", "agent_us": -5}),
    ])  # fmt: skip
    assert (status, body["accepted"]) == (200, 3), "a bad trace never costs the event"
    events = await started(api)
    assert [(e.trace.engine_us, e.trace.agent_us) for e in events] == [(0, 0)] * 3, "every bad time dropped"
    assert [e.trace.id for e in events] == [e.id for e in events], "a bad id is replaced by the event's own"
    assert await metric(api, 'flareport_trace_fields_dropped_total{field="agent_us"}') >= 3


async def test_a_trace_field_of_the_wrong_type_is_a_422_naming_it(api: Api) -> None:
    key, agent_id = await enrolled(api)
    status, body = await post(api, key, agent_id, [start(1, {"agent_us": "soon"})])
    assert status == 422
    assert "events[0].trace.agent_us" in body["error"]["field"]
