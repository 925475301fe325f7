"""A stolen agent key abusing the run hint (``EventBatch.starting``) against a zone every agent shares.

The hint only moves when a job goes: a run announced (``starting`` above 0) holds the target's job for a window, and
a run's end (``starting`` 0) may send it at once. An agent that alternates "more to come" and "all started" as fast
as it can must not get the shared zone written more often than one job a window, as any agent sending changes
already could: each of those writes is a call of the account's shared rate budget. Without the rule that a run's
end sends a job no sooner than a window after the target's last one, every "all started" would be a job.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)

WINDOW_S = 1.0
BATCH = "POST /zones/{zone_id}/dns_records/batch"


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    window_ms = str(int(WINDOW_S * 1000))
    return stack_factory(FLAREPORT_COALESCE_WINDOW_MS=window_ms, FLAREPORT_COALESCE_MAX_WINDOW_MS="5000")


def start(seq: int, cid: str, hostname: str) -> dict[str, Any]:
    rule = {"hostname": hostname, "service": "http://web:80"}
    container = {"container_id": cid, "name": cid, "rules": [rule]}
    return {"type": "container_start", "agent_id": "ignored", "seq": seq, "container": container}


def test_alternating_run_hints_get_the_shared_zone_no_more_than_one_job_a_window(stack: E2EStack) -> None:
    key = stack.admin("POST", "/api/v1/keys", {"label": "hinter"})["key"]
    status, answer = stack.api("POST", "/api/v1/agents/register", {"display_name": "hinter"}, key=key)
    assert status == 200, answer
    agent_id, seq = str(answer["agent_id"]), int(answer.get("last_seq") or 0)
    stack.enroll(agent_id, "hinter")
    path = f"/api/v1/agents/{agent_id}/events"
    # A first rule published, so the zone has been written and every later change meets a target written lately.
    status, answer = stack.api("POST", path, {"events": [start(seq + 1, "c0", f"h0.{ZONE}")]}, key=key)
    assert status == 200, answer
    stack.wait_rules_active({f"h0.{ZONE}"})
    stack.wait_idle()
    before = stack.writes().get(BATCH, 0)

    began = time.monotonic()
    names = {f"h0.{ZONE}"}
    for n in range(1, 31):
        hostname = f"h{n}.{ZONE}"
        names.add(hostname)
        body = {"events": [start(seq + 1 + n, f"c{n}", hostname)], "starting": 5 if n % 2 else 0}
        status, answer = stack.api("POST", path, body, key=key)
        assert status == 200 and answer["accepted"] == 1, answer
        time.sleep(0.1)  # paces the attack (about 3 s of it); not a wait for anything
    attack = time.monotonic() - began
    stack.wait_rules_active(names)
    stack.wait_idle()

    jobs = stack.writes().get(BATCH, 0) - before
    # One job a window at most while it lasted, plus the one that follows its last change.
    most = int(attack / WINDOW_S) + 2
    assert 1 <= jobs <= most, f"{jobs} DNS batches for the zone in {attack:.1f} s of alternating hints (at most {most})"
