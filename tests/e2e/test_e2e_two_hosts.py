"""Two simulated hosts, each with its own Podman engine, agent and tunnel (issue 8, system test 2)."""

from __future__ import annotations

from typing import Any

import pytest

from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


def test_a_hostname_claimed_by_two_hosts_stays_with_the_first_and_the_second_is_a_conflict(
    stack_factory: StackFactory,
) -> None:
    stack = stack_factory()
    first = stack.hosts["host1"]
    first_agent = stack.wait_new_agent(set())["agent_id"]
    first_tunnel = stack.enroll(first_agent, "host-one")
    second = stack.add_host("host2")
    second_agent = stack.wait_new_agent({first_agent})["agent_id"]
    second_tunnel = stack.enroll(second_agent, "host-two")
    assert first_tunnel != second_tunnel

    first.labelled("shop", "shop.example.test", stack.image)
    first.labelled("one", "one.example.test", stack.image)
    second.labelled("two", "two.example.test", stack.image)
    stack.wait_published(first_tunnel, {"shop.example.test": "http://shop:80", "one.example.test": "http://one:80"})
    stack.wait_published(second_tunnel, {"two.example.test": "http://two:80"})
    stack.wait_rules_active({"shop.example.test", "one.example.test", "two.example.test"})
    record_before = next(r for r in stack.dns_records() if r["name"] == "shop.example.test")

    # The second host now wants the same hostname, with another service.
    second.labelled("shop2", "shop.example.test", stack.image)

    def conflict() -> dict[str, Any]:
        rules = stack.rules_of("shop.example.test")
        return next((r for r in rules if r["agent_id"] == second_agent and r["status"] == "conflict"), {})

    losing = wait_for_sync(conflict, timeout=90, interval=0.3, what="the second host's claim shown as a conflict")
    assert losing["error"], losing
    winning = [r for r in stack.rules_of("shop.example.test") if r["agent_id"] == first_agent]
    assert [r["status"] for r in winning] == ["active"]
    assert winning[0]["service"] == "http://shop:80"

    # Nothing in Cloudflare moved: the record still points at the first tunnel, the second tunnel never routes it.
    # (The unrelated change below is a barrier: once it is published, the second host's state has been synced.)
    second.labelled("three", "three.example.test", stack.image)
    stack.wait_published(second_tunnel, {"two.example.test": "http://two:80", "three.example.test": "http://three:80"})
    stack.wait_published(first_tunnel, {"shop.example.test": "http://shop:80", "one.example.test": "http://one:80"})
    record_after = next(r for r in stack.dns_records() if r["name"] == "shop.example.test")
    assert record_after["id"] == record_before["id"]
    assert record_after["modified_on"] == record_before["modified_on"]
