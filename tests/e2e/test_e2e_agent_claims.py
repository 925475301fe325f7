"""A stolen agent key against other hosts' hostnames, through the real API, reconciler and dns-worker (issue 14).

Each test is an attack that worked before: forging the claim order with agent data, squatting names with a key
nobody enrolled, queueing behind an owner to take its name when it recreates its container, and naming an
allowed zone for a hostname outside it. Each ends with what Cloudflare holds, and with the admin's remedies:
revoking the attacker releases its names, and an admin can assign a contested hostname.
"""

from __future__ import annotations

from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack
from fptest.fake_agent import FakeAgent, cname_target, rule_of, wait_rule
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    return stack_factory(GRACE_PERIOD_SECONDS="2")


def web(hostname: str, **extra: Any) -> dict[str, Any]:
    return {"hostname": hostname, "service": "http://web:80", **extra}


def wait_cname(stack: E2EStack, hostname: str, agent: FakeAgent) -> None:
    wait_for_sync(
        lambda: cname_target(stack, hostname) == agent.tunnel_id,
        timeout=90,
        interval=0.3,
        what=f"{hostname}'s CNAME to point at {agent.agent_id}'s tunnel",
    )


def test_agent_data_cannot_forge_the_first_claim(stack: E2EStack) -> None:
    host = f"forge.{ZONE}"
    victim = FakeAgent.register(stack, "forge-victim")
    attacker = FakeAgent.register(stack, "forge-attacker")
    answer = victim.start("v1", web(host))
    assert answer[0] == 200, answer
    wait_cname(stack, host, victim)

    # A "claimed_at" key inside agent-controlled data (an Access custom rule), then the same container without it:
    # the old claims script copied the forged 0 into the claim's own time and the attacker became the owner.
    forged = web(host, access={"custom_rules": [{"claimed_at": 0, "everyone": {}}]})
    attacker.start("a1", forged)  # refused by the API's validation, or stored as data: either way not an order
    assert attacker.start("a1", web(host))[0] == 200

    wait_rule(stack, host, attacker, "conflict")
    assert cname_target(stack, host) == victim.tunnel_id


def test_a_pending_key_cannot_squat_a_hostname(stack: E2EStack) -> None:
    host = f"squat.{ZONE}"
    squatter = FakeAgent.register(stack, "squatter", enrol=False)
    assert squatter.start("s1", web(host))[0] == 200
    wait_rule(stack, host, squatter, "error")  # denied: not enrolled

    owner = FakeAgent.register(stack, "squat-owner")
    assert owner.start("o1", web(host))[0] == 200
    wait_rule(stack, host, owner, "active")
    assert cname_target(stack, host) == owner.tunnel_id
    assert "not enrolled" in str(rule_of(stack, host, squatter.agent_id)["error"])


def test_an_owner_keeps_its_hostname_across_its_own_container_recreation(stack: E2EStack) -> None:
    host = f"recreate.{ZONE}"
    owner = FakeAgent.register(stack, "recreate-owner")
    queued = FakeAgent.register(stack, "recreate-queued")
    assert owner.start("old", web(host))[0] == 200
    wait_cname(stack, host, owner)
    assert queued.start("q1", web(host))[0] == 200
    wait_rule(stack, host, queued, "conflict")

    # docker compose up --force-recreate: the old container stops, a new one (new id) starts within the grace
    # period. Once the old container's grace period ends, the queued agent used to take the name.
    assert owner.stop("old")[0] == 200
    assert owner.start("new", web(host))[0] == 200
    wait_for_sync(
        lambda: not any(r.get("container_id") == "old" for r in stack.rules_of(host)),
        timeout=90,
        interval=0.3,
        what="the old container's grace period to end",
    )
    wait_rule(stack, host, queued, "conflict")
    assert rule_of(stack, host, owner.agent_id)["container_id"] == "new"
    assert cname_target(stack, host) == owner.tunnel_id


def test_the_allow_list_holds_whatever_zone_the_agent_names(stack: E2EStack) -> None:
    victim_zone = "victim-claims.test"
    stack.emu(
        "POST",
        "/__emulator/seed",
        {
            "zones": [{"name": victim_zone, "status": "active"}],
            "dns_records": [
                {"zone_name": victim_zone, "name": f"pwn.{victim_zone}", "type": "A", "content": "192.0.2.7"}
            ],
        },
    )
    fenced = FakeAgent.register(stack, "fenced", allowed_zones=[ZONE])
    host = f"pwn.{victim_zone}"
    status, answer = fenced.start("f1", web(host, zone_name=ZONE))
    if status == 200:  # not refused at the door: the reconciler must deny it
        rule = wait_rule(stack, host, fenced, "error")
        assert "not inside" in rule["error"] or "outside what agent" in rule["error"], rule
    else:
        assert status == 422 and "zone_name" in answer["error"]["field"], answer
    stack.wait_idle()
    records = [r for r in stack.dns_records() if r["name"] == host]
    assert [(r["type"], r["content"]) for r in records] == [("A", "192.0.2.7")]


def test_revoking_the_owner_releases_its_hostnames_and_an_admin_can_assign_one(stack: E2EStack) -> None:
    host = f"contested.{ZONE}"
    first = FakeAgent.register(stack, "contested-first")
    second = FakeAgent.register(stack, "contested-second")
    third = FakeAgent.register(stack, "contested-third")
    assert first.start("c1", web(host))[0] == 200
    wait_cname(stack, host, first)
    assert second.start("c2", web(host))[0] == 200
    assert third.start("c3", web(host))[0] == 200
    wait_rule(stack, host, third, "conflict")

    # The admin settles it for the third agent, whoever claimed first.
    assert stack.api("PUT", f"/api/v1/hostnames/{host}/owner", {"agent_id": third.agent_id})[0] == 202
    wait_cname(stack, host, third)
    assert "assigned by an admin" in str(wait_rule(stack, host, first, "error")["error"])
    # An agent key is not an admin key.
    status, _ = stack.api("PUT", f"/api/v1/hostnames/{host}/owner", {"agent_id": first.agent_id}, key=first.key)
    assert status in (401, 403)
    assert stack.api("DELETE", f"/api/v1/hostnames/{host}/owner")[0] == 202
    wait_cname(stack, host, first)

    # Revoking the owner's only key releases its claims: the next claimant takes over.
    stack.admin("POST", f"/api/v1/keys/{first.key_id}/revoke")
    wait_cname(stack, host, second)
    assert not rule_of(stack, host, first.agent_id)
