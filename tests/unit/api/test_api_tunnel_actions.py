"""What an admin may do with a tunnel (pure): nothing with one no running agent has (a foreign tunnel included);
and a redeploy's image must name the image the agent runs, in any spelling of it."""

from __future__ import annotations

import pytest

from flareport_api.apierror import ApiError
from flareport_api.tunnelschemas import TunnelView
from flareport_api.usecases.tunnels import actions_for, redeploy_image
from flareport_common.messages.events import TunnelState
from flareport_common.readmodel import AgentRecord

AGENT = AgentRecord(agent_id="a1", display_name="web host", status="active")


def test_only_a_tunnel_flareport_created_and_a_running_agent_has_gets_actions() -> None:
    assert actions_for(True, AGENT) == (("restart", "redeploy"), None)
    assert actions_for(True, AgentRecord(agent_id="a1", display_name="web host", status="offline"))[0]
    none, why = actions_for(False, None)
    assert none == () and why is not None and "not created by Flareport" in why
    # Adopted at enrolment (e.g. DockFlare's tunnel): the agent's own cloudflared may still be restarted.
    assert actions_for(False, AGENT) == (("restart", "redeploy"), None)
    assert actions_for(True, None) == ((), "no agent runs this tunnel")
    leaving = AgentRecord(agent_id="a1", display_name="web host", status="decommissioning")
    assert actions_for(True, leaving) == ((), "its agent web host is decommissioning")
    external = AgentRecord(
        agent_id="a1", display_name="web host", status="active", tunnel=TunnelState(container_state="external")
    )
    none, why = actions_for(True, external)
    assert none == () and why is not None and "external cloudflared" in why


def _tunnel(image: str | None) -> TunnelView:
    return TunnelView(id="t", name="t", status="healthy", agent_image=image)


def test_a_redeploy_names_the_agents_image_or_is_refused_naming_the_field() -> None:
    runs = "cloudflare/cloudflared:2025.9.0"
    assert redeploy_image(None, _tunnel(runs)) is None
    assert redeploy_image("docker.io/cloudflare/cloudflared:2025.9.0", _tunnel(runs)) == (
        "docker.io/cloudflare/cloudflared:2025.9.0"
    )
    for wrong in ("cloudflare/cloudflared:2024.1.0", "evil/cloudflared:2025.9.0", "UPPER:1", "a b"):
        with pytest.raises(ApiError) as refused:
            redeploy_image(wrong, _tunnel(runs))
        assert (refused.value.status, refused.value.field) == (422, "image"), wrong
    with pytest.raises(ApiError) as unknown:
        redeploy_image(runs, _tunnel(None))
    assert unknown.value.status == 409
