"""Bad input across the boundary, and the rest keeps working (issue 8, system test 5).

Malformed container labels, a bounded flood of invalid API requests, and a revoked agent key: each is refused or
reported precisely, and the stack goes on publishing what is valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack, http
from fptest.waiting import wait_for_sync

from .conftest import Enrolled, StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def enrolled(stack_factory: StackFactory) -> Enrolled:
    return enrol_first_agent(stack_factory(GRACE_PERIOD_SECONDS="2"), "boundary")


def _label_errors(stack: E2EStack, agent_id: str, container: str) -> list[dict[str, Any]]:
    record = stack.agent(agent_id)
    entries = [entry for entry in record.get("label_errors") or [] if entry["container_name"] == container]
    return [error for entry in entries for error in entry["errors"]]


def test_malformed_labels_are_reported_and_other_containers_still_publish(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    host.run(
        "broken",
        {
            "flareport.enable": "true",
            "flareport.hostname": f"broken.{ZONE}",
            "flareport.service": "http://broken:80/app",
            # Its second rule is fine and is published regardless.
            "flareport.0.hostname": f"fine.{ZONE}",
            "flareport.0.service": "http://broken:8080",
        },
        stack.image,
    )
    host.run("typo", {"flareport.enable": "ture", "flareport.hostname": f"typo.{ZONE}"}, stack.image)
    host.labelled("healthy", f"healthy.{ZONE}", stack.image)
    stack.wait_rules_active({f"healthy.{ZONE}", f"fine.{ZONE}"})

    errors = wait_for_sync(
        lambda: _label_errors(stack, enrolled.agent_id, "broken"), timeout=60, interval=0.3, what="broken's errors"
    )
    assert errors[0]["label"] == "flareport.service", errors
    assert "path" in errors[0]["reason"], errors
    typo = wait_for_sync(
        lambda: _label_errors(stack, enrolled.agent_id, "typo"), timeout=60, interval=0.3, what="typo's errors"
    )
    assert typo[0]["label"] == "flareport.enable" and "ture" in typo[0]["reason"], typo
    assert not stack.rules_of(f"broken.{ZONE}")
    assert not [r for r in stack.dns_records() if r["name"] in (f"broken.{ZONE}", f"typo.{ZONE}")]


def _flood(stack: E2EStack) -> list[tuple[str, int]]:
    """500 invalid requests of many kinds, with the master key (so no address is locked out), plus a few bad keys."""
    url = stack.api_url
    key = stack.master_key
    agent = stack.agents()[0]["agent_id"]
    rules = f"{url}/api/v1/manual-rules"
    kinds: list[tuple[str, Callable[[], tuple[int, Any]]]] = [
        ("malformed json", lambda: http("POST", f"{url}/api/v1/keys", b"{not json", key=key)),
        ("unknown field", lambda: http("POST", f"{url}/api/v1/keys", {"label": "x", "admin": True}, key=key)),
        ("bad hostname", lambda: http("POST", rules, {"hostname": "bad..host", "service": "http://x:1"}, key=key)),
        ("bad service", lambda: http("POST", rules, {"hostname": f"m.{ZONE}", "service": "ftp://x"}, key=key)),
        ("too large", lambda: http("POST", f"{url}/api/v1/keys", {"label": "x" * 1_100_000}, key=key)),
        ("unknown agent", lambda: http("POST", f"{url}/api/v1/agents/agt_nope/enroll", {"tunnel_name": "t"}, key=key)),
        ("bad enroll", lambda: http("POST", f"{url}/api/v1/agents/{agent}/enroll", {"tunnel_name": 7}, key=key)),
        ("bad query", lambda: http("GET", f"{url}/api/v1/dead-letters?count=-4", key=key)),
        ("unknown route", lambda: http("GET", f"{url}/api/v1/nothing-here", key=key)),
        ("wrong method", lambda: http("DELETE", f"{url}/api/v1/status", key=key)),
    ]
    answers = []
    for index in range(490):
        name, call = kinds[index % len(kinds)]
        answers.append((name, call()[0]))
    for _ in range(10):  # below the per-address failure limit: the agents share this address
        answers.append(("bad key", http("GET", f"{url}/api/v1/agents", key="not-a-key-at-all")[0]))
    return answers


def test_a_flood_of_invalid_requests_gets_4xx_and_the_stack_keeps_working(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    answers = _flood(stack)
    wrong = sorted({(name, status) for name, status in answers if not 400 <= status < 500})
    assert not wrong, f"invalid requests answered outside 4xx: {wrong}"
    assert stack.admin("GET", "/readyz") is not None
    # Nothing invalid was taken in, and the stack still publishes.
    assert not any(r.get("hostname") == f"m.{ZONE}" for r in stack.rules())
    host.labelled("survivor", f"survivor.{ZONE}", stack.image)
    stack.wait_rules_active({f"survivor.{ZONE}"})
    assert all(c.process.poll() is None for c in stack.supervisor.children if c.name in ("api", "reconciler"))


def test_a_revoked_key_is_refused_on_the_next_call_and_everything_else_keeps_working(enrolled: Enrolled) -> None:
    stack = enrolled.stack
    known = {a["agent_id"] for a in stack.agents()}
    second = stack.add_host("revoked")
    agent_id = stack.wait_new_agent(known)["agent_id"]
    stack.enroll(agent_id, "to-be-revoked")
    second.labelled("before", f"before-revoke.{ZONE}", stack.image)
    stack.wait_rules_active({f"before-revoke.{ZONE}"})

    key_id = next(k["key_id"] for k in stack.admin("GET", f"/api/v1/agents/{agent_id}")["keys"])
    stack.admin("POST", f"/api/v1/keys/{key_id}/revoke")
    assert second.agent is not None and second.agent_env is not None
    status, answer = http(
        "POST", f"{stack.api_url}/api/v1/agents/{agent_id}/heartbeat", {}, key=second.agent_env["FLAREPORT_API_KEY"]
    )
    assert status == 401 and answer["error"]["code"] == "key_revoked", answer

    # The agent's own next call (the event of a new container) is refused, and it says so.
    second.labelled("after", f"after-revoke.{ZONE}", stack.image)
    line = stack.supervisor.wait_for_line(second.agent, lambda text: "master.key_rejected" in text, 90)
    assert "FLAREPORT_API_KEY" in line
    # Everything else keeps working: the first host publishes, and nothing of the revoked agent's came in.
    enrolled.host.labelled("unaffected", f"unaffected.{ZONE}", stack.image)
    stack.wait_rules_active({f"unaffected.{ZONE}"})
    assert not stack.rules_of(f"after-revoke.{ZONE}")
