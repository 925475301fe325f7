"""What DockFlare gets wrong, each as a test against the whole stack (issue 8, system test 4).

* a CNAME somebody else made on a wanted name is left alone (DockFlare overwrites it);
* rules added in the Cloudflare dashboard, plain or wildcard, stay in place ahead of the catch-all (DockFlare drops the
  plain one and appends the wildcard after the catch-all, which makes every later configuration update fail);
* restarting the control plane and the agent with many labelled containers running and nothing changed writes
  nothing to Cloudflare.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from fptest.e2e_stack import ZONE, E2EStack, Host
from fptest.waiting import wait_for_sync

from .conftest import Enrolled, StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def enrolled(stack_factory: StackFactory) -> Enrolled:
    return enrol_first_agent(stack_factory(GRACE_PERIOD_SECONDS="2"), "dockflare")


def _record(stack: E2EStack, name: str) -> list[dict[str, Any]]:
    return [r for r in stack.dns_records() if r["name"] == name]


def test_restarting_everything_with_nothing_changed_writes_nothing_to_cloudflare(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    wanted = {}
    for index in range(30):
        name = f"steady{index}"
        host.labelled(name, f"{name}.{ZONE}", stack.image)
        wanted[f"{name}.{ZONE}"] = name
    stack.wait_rules_active(set(wanted))
    stack.wait_idle()
    writes_before = stack.writes()
    records_before = {r["id"]: r for r in stack.dns_records()}

    agent_name = host.agent.name if host.agent else "agent"
    stack.kill(agent_name, signal.SIGTERM)
    for service in ("dns-worker", "reconciler", "api"):
        stack.kill(service, signal.SIGTERM)
    stack.restart_api()
    stack.start_service("reconciler")
    stack.start_service("dns-worker")
    stack.start_agent(host)

    # The restarted agent registered again and its inventory went through the whole pipeline.
    wait_for_sync(
        lambda: host.agent_metric("flareport_agent_events_sent_total", type="inventory") >= 1 and stack.idle(),
        timeout=90,
        interval=0.3,
        what="the restarted agent's inventory processed",
    )
    stack.wait_idle()
    records_after = {r["id"]: r for r in stack.dns_records()}
    changed = {k: (records_before.get(k), records_after.get(k)) for k in records_before.keys() | records_after.keys()}
    changed = {k: pair for k, pair in changed.items() if pair[0] != pair[1]}
    assert stack.writes() == writes_before, changed
    assert all(r["status"] == "active" for r in stack.rules() if r["hostname"] in wanted)


def test_a_foreign_cname_on_a_wanted_name_is_left_alone_and_reported(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    stack.emu(
        "POST",
        "/__emulator/seed",
        {"dns_records": [{"zone_name": ZONE, "name": "legacy", "type": "CNAME", "content": "elsewhere.example.net"}]},
    )
    foreign = _record(stack, f"legacy.{ZONE}")
    assert len(foreign) == 1

    host.labelled("legacy", f"legacy.{ZONE}", stack.image)
    conflict = wait_for_sync(
        lambda: [r for r in stack.rules_of(f"legacy.{ZONE}") if r["status"] in ("conflict", "error")],
        timeout=90,
        interval=0.3,
        what="the rule on the foreign name reported",
    )
    assert conflict[0]["status"] == "conflict", conflict
    assert conflict[0]["error"], conflict
    # A later change to the same zone is synced (barrier), and the foreign record is still exactly as it was.
    host.labelled("neighbour", f"neighbour.{ZONE}", stack.image)
    stack.wait_rules_active({f"neighbour.{ZONE}"})
    assert _record(stack, f"legacy.{ZONE}") == foreign


def test_rules_added_in_the_dashboard_stay_in_place_ahead_of_the_catch_all(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    host.labelled("before", f"before.{ZONE}", stack.image)
    stack.wait_rules_active({f"before.{ZONE}"})
    path = f"/accounts/{stack.env['CLOUDFLARE_ACCOUNT_ID']}/cfd_tunnel/{enrolled.tunnel_id}/configurations"
    status, current = stack.cf("GET", path)
    assert status == 200, current
    ingress = current["result"]["config"]["ingress"]
    plain = {"hostname": f"dash.{ZONE}", "service": "http://dashboard-made:8080"}
    wildcard = {"hostname": f"*.wild.{ZONE}", "service": "http://wild:80"}
    edited = [*ingress[:-1], plain, wildcard, ingress[-1]]
    status, answer = stack.cf("PUT", path, {"config": {**current["result"]["config"], "ingress": edited}})
    assert status == 200, answer

    # Later syncs: a container starts, another stops (its rule is removed after the grace period).
    host.labelled("after", f"after.{ZONE}", stack.image)
    stack.wait_rules_active({f"after.{ZONE}"})
    host.docker.containers.get("before").stop(timeout=1)
    wait_for_sync(
        lambda: not any(r.get("hostname") == f"before.{ZONE}" for r in stack.ingress(enrolled.tunnel_id)),
        timeout=90,
        interval=0.3,
        what="before's ingress rule removed",
    )
    final = stack.ingress(enrolled.tunnel_id)
    assert plain in final, final
    assert wildcard in final, final
    assert "hostname" not in final[-1], final
    assert {"hostname": f"after.{ZONE}", "service": "http://after:80"} in final
    # The configuration is still one cloudflared accepts: a further sync goes through.
    host.labelled("later", f"later.{ZONE}", stack.image)
    stack.wait_rules_active({f"later.{ZONE}"})
    assert wildcard in stack.ingress(enrolled.tunnel_id)


def _restart_agent_and_wait(stack: E2EStack, host: Host) -> None:
    """Restart the agent (SIGTERM, same data directory) and wait until its inventory went through everything."""
    assert host.agent is not None
    stack.kill(host.agent.name, signal.SIGTERM)
    stack.start_agent(host)
    wait_for_sync(
        lambda: host.agent_metric("flareport_agent_events_sent_total", type="inventory") >= 1 and stack.idle(),
        timeout=90,
        interval=0.3,
        what="the restarted agent's inventory processed",
    )
    stack.wait_idle()


def test_a_container_unpublished_before_an_agent_restart_is_not_published_again(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    gone = host.labelled("gone", f"gone.{ZONE}", stack.image)
    stack.wait_rules_active({f"gone.{ZONE}"})
    gone.stop(timeout=1)
    wait_for_sync(
        lambda: not _record(stack, f"gone.{ZONE}") and not stack.rules_of(f"gone.{ZONE}"),
        timeout=90,
        interval=0.3,
        what="gone's hostname unpublished after the grace period",
    )
    stack.wait_idle()
    writes_before = stack.writes()

    _restart_agent_and_wait(stack, host)
    assert stack.writes() == writes_before
