"""A stolen agent key sending hand-made events (issue 14): an agent rule asking to adopt a name that holds a
foreign A record is refused at the API, naming the field, and Cloudflare's record is left exactly as it was.

Before, ``adopt: true`` in an agent rule made the dns-worker delete foreign A records (the zone apex included)
and replace them with CNAMEs to the attacker's tunnel.
"""

from __future__ import annotations

from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    return stack_factory(GRACE_PERIOD_SECONDS="2")


def enrolled_key(stack: E2EStack, name: str) -> tuple[str, str, int]:
    """A new agent key, registered and enrolled by the admin: (key, agent id, last accepted seq)."""
    key = stack.admin("POST", "/api/v1/keys", {"label": name})["key"]
    status, answer = stack.api("POST", "/api/v1/agents/register", {"display_name": name}, key=key)
    assert status == 200, answer
    agent_id = str(answer["agent_id"])
    stack.enroll(agent_id, name)
    return key, agent_id, int(answer.get("last_seq") or 0)


def start(seq: int, cid: str, *rules: dict[str, Any]) -> dict[str, Any]:
    container = {"container_id": cid, "name": cid, "rules": list(rules)}
    return {"type": "container_start", "agent_id": "ignored", "seq": seq, "container": container}


def a_records(stack: E2EStack, *names: str) -> list[dict[str, Any]]:
    return sorted((r for r in stack.dns_records() if r["name"] in names), key=lambda r: str(r["name"]))


def test_an_agent_cannot_adopt_a_foreign_a_record(stack: E2EStack) -> None:
    status, zones = stack.cf("GET", f"/zones?name={ZONE}")
    assert status == 200 and zones["result"], zones
    zone_id = zones["result"][0]["id"]
    victim = f"legacy-a.{ZONE}"
    for name, address in ((victim, "192.0.2.10"), (ZONE, "192.0.2.11")):
        status, made = stack.cf("POST", f"/zones/{zone_id}/dns_records", {"type": "A", "name": name,
                                                                         "content": address, "ttl": 1})  # fmt: skip
        assert status == 200, made
    before = a_records(stack, victim, ZONE)
    assert [r["type"] for r in before] == ["A", "A"]

    key, agent_id, seq = enrolled_key(stack, "adopter")
    path = f"/api/v1/agents/{agent_id}/events"
    for index, hostname in enumerate((victim, ZONE)):
        attack = start(seq + 1 + index, f"evil{index}", {"hostname": hostname, "service": "http://web:80",
                                                         "adopt": True})  # fmt: skip
        status, answer = stack.api("POST", path, {"events": [attack]}, key=key)
        assert status == 422, answer
        assert answer["error"]["field"] == "events[0].container.rules[0].adopt", answer
        assert "only an admin may adopt" in answer["error"]["message"], answer

    # The same agent's honest rule in the same zone goes through: a barrier showing the zone was synced since.
    barrier = f"adopter-ok.{ZONE}"
    status, answer = stack.api("POST", path, {"events": [start(seq + 3, "ok", {"hostname": barrier,
                                                                                 "service": "http://web:80"})]},
                               key=key)  # fmt: skip
    assert status == 200 and answer["accepted"] == 1, answer
    stack.wait_rules_active({barrier})
    stack.wait_idle()
    assert a_records(stack, victim, ZONE) == before, "the foreign A records are untouched"
    assert not stack.rules_of(victim), "no rule was ever created for the refused name"
