"""An agent's totals across many small requests (issue 14): each request is within the API's per-request quotas,
but one start at a time a stolen key could still make the control plane store and publish without bound. Over
the agent's containers or hostnames limit, a container publishes nothing and says why; other agents go on."""

from __future__ import annotations

from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack
from fptest.fake_agent import FakeAgent, cname_target
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    return stack_factory(FLAREPORT_AGENT_MAX_CONTAINERS="3", FLAREPORT_AGENT_MAX_HOSTNAMES="4")


def web(*hostnames: str) -> list[dict[str, Any]]:
    return [{"hostname": f"{h}.{ZONE}", "service": "http://web:80"} for h in hostnames]


def quota_errors(stack: E2EStack, agent_id: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in stack.agent(agent_id).get("label_errors") or []:
        for error in entry["errors"]:
            if "not published" in error["reason"]:
                found[entry["container_id"]] = error["reason"]
    return found


def test_containers_and_hostnames_beyond_the_agents_limits_are_not_published(stack: E2EStack) -> None:
    greedy = FakeAgent.register(stack, "greedy")
    other = FakeAgent.register(stack, "bystander")
    assert greedy.start("c1", *web("q1"))[0] == 200
    assert greedy.start("c2", *web("q2"))[0] == 200
    assert greedy.start("c3", *web("q3", "q4", "q5"))[0] == 200  # 2 + 3 hostnames > 4
    assert greedy.start("c4", *web("q6"))[0] == 200  # a 4th container > 3

    errors = wait_for_sync(
        lambda: (lambda e: e if {"c3", "c4"} <= e.keys() else {})(quota_errors(stack, greedy.agent_id)),
        timeout=90,
        interval=0.3,
        what="quota errors on the agent's page",
    )
    assert "FLAREPORT_AGENT_MAX_HOSTNAMES" in errors["c3"] and "FLAREPORT_AGENT_MAX_CONTAINERS" in errors["c4"]
    stack.wait_rules_active({f"q1.{ZONE}", f"q2.{ZONE}"})
    assert other.start("b1", *web("by1"))[0] == 200  # the limits are the greedy agent's own
    stack.wait_rules_active({f"by1.{ZONE}"})
    stack.wait_idle()
    for name in ("q3", "q4", "q5", "q6"):
        assert cname_target(stack, f"{name}.{ZONE}") is None, name
        assert not stack.rules_of(f"{name}.{ZONE}"), name
