"""``GET /api/v1/backup`` / ``POST /api/v1/restore`` in-process: an agent registered under its old id is enrolled
again with its tunnel and policy through the same intents as the admin routes, and an agent's key never reaches
either route. (The round trip through a wiped Redis prefix, with a real API process: tests/integration/cli.)"""

from __future__ import annotations

from typing import Any

import msgspec

from flareport_common.messages.intents import AgentEnrolled, AgentRenamed, IntentMessage
from flareport_common.readmodel import AgentRecord
from fptest.api_helpers import stream_messages

from .conftest import Api


async def put_agent(api: Api, record: AgentRecord) -> None:
    """The agent's read-model document, as the reconciler writes it."""
    await api.redis.set(api.keys.agent(record.agent_id), msgspec.json.encode(record))
    await api.redis.sadd(api.keys.agents_index, record.agent_id)


def document(agent_id: str) -> dict[str, Any]:
    return {
        "format": "flareport-backup",
        "format_version": 1,
        "created_at": "2026-01-02T03:04:05Z",
        "source_prefix": "old:",
        "agents": [
            {
                "agent_id": agent_id,
                "display_name": "edge one",
                "tunnel_id": "tun-1",
                "allowed_zones": ["example.com"],
                "allow_apex": True,
            }
        ],
    }


async def test_a_registered_agent_is_enrolled_again_with_its_tunnel_and_policy(api: Api) -> None:
    agent_id = (await api.register(await api.new_key(), name="renamed since"))["agent_id"]
    await put_agent(api, AgentRecord(agent_id=agent_id, display_name="renamed since"))

    dry = await api.client.post("/api/v1/restore", json=document(agent_id), headers=api.admin)
    assert dry.status == 200, await dry.text()
    [item] = (await dry.json())["objects"]
    assert (item["action"], item["notes"]) == ("create", ["enrol with tunnel tun-1 (adopted) and the backup's policy"])
    assert await stream_messages(api.redis, api.keys.intents, IntentMessage) == [], "a dry run by default"

    applied = await api.client.post("/api/v1/restore?apply=true", json=document(agent_id), headers=api.admin)
    assert (await applied.json())["summary"] == {"created": 1}
    enrolled, renamed = await stream_messages(api.redis, api.keys.intents, IntentMessage)
    assert isinstance(enrolled, AgentEnrolled) and isinstance(renamed, AgentRenamed)
    assert (enrolled.agent_id, enrolled.tunnel_id, enrolled.tunnel_name) == (agent_id, "tun-1", None)
    assert (enrolled.allowed_zones, enrolled.allow_apex, enrolled.allow_wildcard) == (("example.com",), True, False)
    assert renamed.display_name == "edge one"

    # Once the reconciler recorded the enrolment, the same document changes nothing.
    await put_agent(
        api,
        AgentRecord(
            agent_id=agent_id,
            display_name="edge one",
            tunnel_id="tun-1",
            allowed_zones=("example.com",),
            allow_apex=True,
        ),
    )
    again = await api.client.post("/api/v1/restore?apply=true", json=document(agent_id), headers=api.admin)
    assert (await again.json())["summary"] == {"unchanged": 1}


async def test_an_agent_key_reaches_neither_route(api: Api) -> None:
    key = await api.new_key()
    await api.register(key)
    assert (await api.client.get("/api/v1/backup", headers=api.bearer(key))).status == 401
    restore = await api.client.post("/api/v1/restore?apply=true", json=document("a1"), headers=api.bearer(key))
    assert restore.status == 401
    bad = await api.client.post("/api/v1/restore?apply=yes", json=document("a1"), headers=api.admin)
    assert (bad.status, (await bad.json())["error"]["field"]) == (422, "apply")
