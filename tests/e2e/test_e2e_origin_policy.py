"""A stolen agent key publishing what lies beyond its host's containers, through the real API, reconciler and
dns-worker (issue 14): the cloud metadata service (the instance's credentials) and the Docker socket (root on the
host). Each is a per-rule error naming the origin policy, with nothing at Cloudflare, until an admin allows the
kind for that agent (or for all, as this stack does for bastions); the agent's other rules publish regardless.
"""

from __future__ import annotations

from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack
from fptest.fake_agent import FakeAgent, cname_target, rule_of, wait_rule

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    # The global allowance of one kind, as an admin would configure it for every agent.
    return stack_factory(GRACE_PERIOD_SECONDS="2", FLAREPORT_AGENT_ORIGIN_ALLOW="bastion")


def rule(hostname: str, service: str) -> dict[str, Any]:
    return {"hostname": hostname, "service": service}


def ingress_services(stack: E2EStack, agent: FakeAgent) -> dict[str, str]:
    assert agent.tunnel_id is not None
    return {e["hostname"]: e["service"] for e in stack.ingress(agent.tunnel_id) if "hostname" in e}


def test_metadata_and_socket_origins_are_denied_until_the_admin_allows_them(stack: E2EStack) -> None:
    meta, sock, fine = f"meta.{ZONE}", f"sock.{ZONE}", f"fine.{ZONE}"
    agent = FakeAgent.register(stack, "origins")
    status, answer = agent.start(
        "c1",
        rule(meta, "http://169.254.169.254"),
        rule(sock, "unix:/var/run/docker.sock"),
        rule(fine, "http://web:80"),
    )
    assert status == 200, answer

    wait_rule(stack, fine, agent, "active")
    for hostname, kind in ((meta, "metadata"), (sock, "unix")):
        denied = wait_rule(stack, hostname, agent, "error")
        assert "origin policy" in denied["error"] and f"allow '{kind}'" in denied["error"], denied
        assert cname_target(stack, hostname) is None
    assert set(ingress_services(stack, agent)) == {fine}

    # The admin allows the metadata service for this agent alone: that rule is published, the socket stays denied.
    stack.admin("PATCH", f"/api/v1/agents/{agent.agent_id}/policy", {"origin_allow": ["metadata"]})
    wait_rule(stack, meta, agent, "active")
    assert cname_target(stack, meta) == agent.tunnel_id
    assert ingress_services(stack, agent)[meta] == "http://169.254.169.254"
    assert stack.agent(agent.agent_id)["origin_allow"] == ["metadata"]
    assert "origin policy" in rule_of(stack, sock, agent.agent_id)["error"]
    assert sock not in ingress_services(stack, agent)


def test_an_agent_key_cannot_allow_itself_an_origin(stack: E2EStack) -> None:
    host = f"self-allow.{ZONE}"
    agent = FakeAgent.register(stack, "self-allow")
    widen = {"origin_allow": ["metadata", "unix", "link-local", "bastion"], "allow_wildcard": True}
    status, _ = stack.api("PATCH", f"/api/v1/agents/{agent.agent_id}/policy", widen, key=agent.key)
    assert status == 401
    assert agent.start("c1", rule(host, "http://[::ffff:169.254.169.254]:80"))[0] == 200
    assert "origin policy" in wait_rule(stack, host, agent, "error")["error"]
    assert stack.agent(agent.agent_id).get("origin_allow") in (None, [])
    assert cname_target(stack, host) is None


def test_a_kind_allowed_globally_publishes_for_every_agent_and_opens_no_other(stack: E2EStack) -> None:
    jump, link = f"jump.{ZONE}", f"link.{ZONE}"
    agent = FakeAgent.register(stack, "jump")
    assert agent.start("c1", rule(jump, "bastion"), rule(link, "tcp://169.254.10.1:5432"))[0] == 200
    wait_rule(stack, jump, agent, "active")
    assert ingress_services(stack, agent)[jump] == "bastion"
    assert cname_target(stack, jump) == agent.tunnel_id
    assert "allow 'link-local'" in wait_rule(stack, link, agent, "error")["error"]
    assert cname_target(stack, link) is None
