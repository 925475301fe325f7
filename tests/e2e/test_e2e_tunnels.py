"""The account's tunnels and their cloudflared, through the whole stack against the emulator: the dns-worker lists
the enrolled agent's tunnel with its connector and a tunnel made in the dashboard; an admin's restart and redeploy go
API -> intent -> reconciler -> command -> agent, which replaces its cloudflared container on the engine and acks;
the dashboard's tunnel is refused any action."""

from __future__ import annotations

from typing import Any

import pytest

from fptest.e2e_stack import E2EStack
from fptest.waiting import wait_for_sync

from .conftest import Enrolled, StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)
EMULATED_ORIGIN_IP = "192.0.2.10"  # what the emulator's connectors report


@pytest.fixture(scope="module")
def enrolled(stack_factory: StackFactory) -> Enrolled:
    return enrol_first_agent(stack_factory(), "tunnels")


def _listed(stack: E2EStack, *ids: str) -> dict[str, dict[str, Any]]:
    """The tunnels listing once it holds ``ids`` with a connector on the first, asking for a new listing meanwhile
    (a refresh within seconds of the last listing is answered by it)."""

    def ready() -> dict[str, dict[str, Any]]:
        stack.admin("POST", "/api/v1/tunnels/refresh")
        tunnels = {t["id"]: t for t in stack.admin("GET", "/api/v1/tunnels")["tunnels"]}
        return tunnels if all(i in tunnels for i in ids) and tunnels[ids[0]]["connectors"] else {}

    return wait_for_sync(ready, timeout=60, interval=1.0, what=f"tunnels {ids} listed with a connector")


def _acked(stack: E2EStack, agent_id: str, seen: int) -> dict[str, Any]:
    def acked() -> dict[str, Any]:
        commands = stack.admin("GET", f"/api/v1/agents/{agent_id}")["commands"]
        done = [c for c in commands if c["command_type"] == "restart_tunnel" and c.get("ok") is not None]
        return done[0] if len(done) > seen else {}

    return wait_for_sync(acked, timeout=90, interval=0.3, what="the agent's ack of restart_tunnel")


def _cloudflared_id(enrolled: Enrolled) -> str:
    [container] = enrolled.host.docker.containers.list(filters={"label": "flareport.managed=cloudflared"})
    return str(container.id)


def test_tunnels_are_listed_and_only_the_agents_own_cloudflared_is_restarted_and_redeployed(
    enrolled: Enrolled,
) -> None:
    stack = enrolled.stack
    account = stack.env["CLOUDFLARE_ACCOUNT_ID"]
    status, made = stack.cf(
        "POST", f"/accounts/{account}/cfd_tunnel", {"name": "dashboard-made", "config_src": "cloudflare"}
    )
    assert status == 200, made
    foreign_id = made["result"]["id"]
    stack.emu("POST", f"/__emulator/tunnels/{enrolled.tunnel_id}/connect", {"connections": 2})

    tunnels = _listed(stack, enrolled.tunnel_id, foreign_id)
    ours, foreign = tunnels[enrolled.tunnel_id], tunnels[foreign_id]
    assert (ours["name"], ours["status"], ours["agent_id"]) == ("tunnels", "healthy", enrolled.agent_id)
    assert ours["created_by_flareport"] and ours["actions"] == ["restart", "redeploy"]
    [connector] = ours["connectors"]
    assert connector["origin_ip"] == EMULATED_ORIGIN_IP and connector["connections"] == 2 and connector["version"]
    assert not foreign["created_by_flareport"] and foreign["actions"] == [] and foreign["agent_id"] is None
    status, refused = stack.api("POST", f"/api/v1/tunnels/{foreign_id}/restart")
    assert status == 409 and "not created by Flareport" in refused["error"]["message"], refused

    before = _cloudflared_id(enrolled)
    stack.admin("POST", f"/api/v1/tunnels/{enrolled.tunnel_id}/restart")
    restarted = _acked(stack, enrolled.agent_id, 0)
    assert restarted["ok"] and restarted["result"]["action"] == "replaced", restarted
    after = _cloudflared_id(enrolled)
    assert after != before, "a new cloudflared container runs"

    # A redeploy from the image the agent runs (the only one it accepts), named as the listing shows it.
    assert ours["agent_image"], "the agent reports the image it runs"
    stack.admin("POST", f"/api/v1/tunnels/{enrolled.tunnel_id}/redeploy", {"image": ours["agent_image"]})
    redeployed = _acked(stack, enrolled.agent_id, 1)
    assert redeployed["ok"] and redeployed["result"]["action"] == "replaced", redeployed
    assert _cloudflared_id(enrolled) not in (before, after)
