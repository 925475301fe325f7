"""The tunnel routes: the dns-worker's listing joined with the agent that runs each tunnel and whether Flareport
created it; restart and redeploy only for a tunnel Flareport created (a redeploy only with the agent's own image);
admin only."""

from __future__ import annotations

from typing import Any

from flareport_common.messages.intents import IntentMessage, TunnelRestartRequested, TunnelsRefreshRequested
from fptest import tunnels_seed
from fptest.api_helpers import stream_messages
from fptest.tunnels_seed import FOREIGN, IMAGE, OURS

from .conftest import Api


async def call(api: Api, method: str, path: str, status: int, body: Any = None, key: str | None = None) -> Any:
    headers = api.bearer(key) if key else api.admin
    response = await api.client.request(method, path, json=body, headers=headers)
    assert response.status == status, (
        f"{method} {path}: expected {status}, got {response.status}: {await response.text()}"
    )
    return await response.json()


async def seed(api: Api) -> None:
    pipe = api.redis.pipeline(transaction=True)
    tunnels_seed.queue(pipe, api.keys)
    await pipe.execute()


async def intents(api: Api) -> list[Any]:
    return await stream_messages(api.redis, api.keys.intents, IntentMessage)


async def test_tunnels_are_listed_with_connectors_agent_and_creator_and_only_ours_can_be_restarted(api: Api) -> None:
    await seed(api)
    listed = await call(api, "GET", "/api/v1/tunnels", 200)
    assert 30 <= listed["age_seconds"] < 60 and listed["error"] is None
    ours, foreign = listed["tunnels"]
    assert (ours["id"], ours["status"], ours["agent_id"], ours["agent_name"]) == (OURS, "healthy", "a1", "web host")
    assert ours["created_by_flareport"] and ours["actions"] == ["restart", "redeploy"] and ours["agent_image"] == IMAGE
    [connector] = ours["connectors"]
    assert (connector["version"], connector["origin_ip"], connector["connections"]) == ("2025.9.0", "203.0.113.7", 4)
    assert foreign["created_by_flareport"] is False and foreign["actions"] == []
    assert "not created by Flareport" in foreign["actions_note"]

    shown = await call(api, "GET", f"/api/v1/tunnels/{OURS}", 200)
    assert shown["tunnel"]["name"] == "flareport-a1" and shown["age_seconds"] >= 30
    await call(api, "GET", "/api/v1/tunnels/33333333-3333-4333-8333-333333333333", 404)

    refused = await call(api, "POST", f"/api/v1/tunnels/{FOREIGN}/restart", 409)
    assert "not created by Flareport" in refused["error"]["message"]
    await call(api, "POST", f"/api/v1/tunnels/{FOREIGN}/redeploy", 409, {})
    other = await call(api, "POST", f"/api/v1/tunnels/{OURS}/redeploy", 422, {"image": "evil/cloudflared:1"})
    assert other["error"]["field"] == "image" and IMAGE in other["error"]["message"]
    assert (await call(api, "POST", f"/api/v1/tunnels/{OURS}/redeploy", 422, {"image": "not an image"}))["error"][
        "field"
    ] == "image"
    assert await intents(api) == [], "refused actions write no intent"
    assert (await call(api, "GET", "/api/v1/audit", 200))["entries"] == [], "nor an audit entry"

    await call(api, "POST", f"/api/v1/tunnels/{OURS}/restart", 202)
    # Another spelling of the image the agent runs is that image.
    await call(api, "POST", f"/api/v1/tunnels/{OURS}/redeploy", 202, {"image": "docker.io/" + IMAGE})
    await call(api, "POST", "/api/v1/tunnels/refresh", 202)
    restart, redeploy, refresh = await intents(api)
    assert isinstance(restart, TunnelRestartRequested) and (restart.agent_id, restart.image) == ("a1", None)
    assert isinstance(redeploy, TunnelRestartRequested) and redeploy.image == "docker.io/" + IMAGE
    assert isinstance(refresh, TunnelsRefreshRequested)
    # Who interrupted the tunnel, and when: the audit list, newest first (a refresh changes nothing, so is not in it).
    audited = (await call(api, "GET", "/api/v1/audit", 200))["entries"]
    assert [(e["actor"], e["action"], e["target"], e["intent_id"]) for e in audited] == [
        ("api", "tunnel_redeploy", f"tunnel:{OURS} image:docker.io/{IMAGE}", redeploy.id),
        ("api", "tunnel_restart", f"tunnel:{OURS}", restart.id),
    ]


async def test_an_agent_key_is_refused_on_every_tunnel_route(api: Api) -> None:
    await seed(api)
    key = await api.new_key()
    await api.register(key)
    for method, path in [
        ("GET", "/api/v1/tunnels"),
        ("GET", f"/api/v1/tunnels/{OURS}"),
        ("POST", "/api/v1/tunnels/refresh"),
        ("POST", f"/api/v1/tunnels/{OURS}/restart"),
        ("POST", f"/api/v1/tunnels/{OURS}/redeploy"),
    ]:
        response = await api.client.request(method, path, json={}, headers=api.bearer(key))
        assert response.status in (401, 403), f"{method} {path} with an agent key: {response.status}"
    assert await intents(api) == []
