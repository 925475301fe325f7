"""A key rolled from the web UI is delivered like one rolled through the API: the intents stream carries only
where the new key waits for its agent, never the key (docs/security.md, "Secrets delivered once")."""

from __future__ import annotations

from typing import Any

from flareport_common.messages.intents import IntentMessage, KeyRolled
from fptest.api_helpers import MASTER, stream_messages

from .conftest import Ui


async def test_a_key_rolled_in_the_ui_is_not_in_the_intents_stream(ui: Ui) -> None:
    await ui.logged_in()
    admin = {"Authorization": f"Bearer {MASTER}"}
    key = (await (await ui.client.post("/api/v1/keys", json={"label": "h"}, headers=admin)).json())["key"]
    registered = await ui.client.post(
        "/api/v1/agents/register", json={"display_name": "h"}, headers={"Authorization": f"Bearer {key}"}
    )
    agent_id = (await registered.json())["agent_id"]
    key_id = (await (await ui.client.get("/api/v1/keys", headers=admin)).json())["keys"][0]["key_id"]

    response = await ui.post("/ui/keys/roll", key_id=key_id, back="/ui/keys")
    assert response.status == 302, await response.text()

    [rolled] = [i for i in await stream_messages(ui.redis, ui.keys.intents, IntentMessage) if isinstance(i, KeyRolled)]
    assert rolled.new_key == "" and rolled.secret_ref is not None
    entries: Any = await ui.redis.xrange(ui.keys.intents)
    assert not any(b"fpk_" in fields[b"m"] for _, fields in entries), "no key in clear in the stream"
    waiting: Any = await ui.redis.get(ui.keys.agent_secret(agent_id, rolled.secret_ref))
    assert waiting.startswith(b"fpk_"), "the key waits under the agent's own key"
