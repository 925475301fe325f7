"""Total loss of Redis data (FLUSHALL) while everything runs (issue 8, system test 3, last fault).

What has to survive is Cloudflare: every hostname still wanted stays published (no deletion because the control
plane forgot it), and the read model is rebuilt from the agents (they re-register and resend their inventory).
"""

from __future__ import annotations

import pytest
import redis

from fptest.e2e_stack import E2EStack
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


def test_flushed_redis_is_rebuilt_from_the_agents_without_deleting_anything(stack_factory: StackFactory) -> None:
    stack: E2EStack = stack_factory(GRACE_PERIOD_SECONDS="2", FLAREPORT_CLAIM_IDLE_SECONDS="3")
    host = stack.hosts["host1"]
    agent_id = stack.wait_new_agent(set())["agent_id"]
    tunnel_id = stack.enroll(agent_id, "flushed")
    wanted = {f"keep{n}.example.test": f"http://keep{n}:80" for n in range(3)}
    for n in range(3):
        host.labelled(f"keep{n}", f"keep{n}.example.test", stack.image)
    stack.wait_published(tunnel_id, wanted)
    stack.wait_rules_active(set(wanted))
    ids = sorted(r["id"] for r in stack.dns_records())

    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        client.flushall()
    finally:
        client.close()

    # Rebuilt: the agent is known again, with its rules, and they are active again.
    wait_for_sync(
        lambda: any(a["agent_id"] == agent_id for a in stack.agents()), timeout=45, interval=0.5, what="agent back"
    )
    stack.wait_rules_active(set(wanted), timeout=90)
    # A new hostname after the rebuild is published next to the old ones, which were never deleted.
    host.labelled("after", "after.example.test", stack.image)
    stack.wait_published(tunnel_id, {**wanted, "after.example.test": "http://after:80"})
    assert set(ids) <= {r["id"] for r in stack.dns_records()}
