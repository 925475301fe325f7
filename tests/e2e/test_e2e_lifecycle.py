"""A fresh stack from key to published hostnames and back (issue 8, system test 1)."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from fptest.e2e_stack import E2EStack, Host, http
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    return stack_factory(GRACE_PERIOD_SECONDS="2")


def _cloudflared(host: Host) -> Any:
    found = host.docker.containers.list(filters={"label": "flareport.managed=cloudflared"})
    return found[0] if found else None


def test_enrolled_agent_publishes_containers_and_unpublishes_them_after_the_grace_period(stack: E2EStack) -> None:
    host = stack.hosts["host1"]
    # The agent DevStack started registered with its fresh key and waits, pending, for an admin.
    agent = stack.wait_new_agent(set())
    assert agent["status"] == "pending"
    assert _cloudflared(host) is None

    tunnel_id = stack.enroll(agent["agent_id"], "demo")
    tunnels = stack.cf_state()["tunnels"]
    assert tunnels[tunnel_id]["name"] == "demo"

    cloudflared = wait_for_sync(lambda: _cloudflared(host), timeout=60, interval=0.2, what="cloudflared container")
    cloudflared.reload()
    assert cloudflared.status == "running"
    environment = [item for item in cloudflared.attrs["Config"]["Env"] if item.startswith("TUNNEL_TOKEN=")]
    assert len(environment) == 1
    token = environment[0].split("=", 1)[1]
    assert json.loads(base64.b64decode(token))["t"] == tunnel_id
    # The token is in the environment only: not on the command line, not in a label.
    assert token not in json.dumps(cloudflared.attrs["Config"].get("Cmd") or [])
    assert token not in json.dumps(cloudflared.attrs["Config"].get("Labels") or {})

    host.labelled("web1", "web1.example.test", stack.image)
    host.labelled("web2", "web2.example.test", stack.image)
    host.labelled("web3", "web3.example.test", stack.image, access__policy="bypass")
    wanted = {f"web{n}.example.test": f"http://web{n}:80" for n in (1, 2, 3)}
    stack.wait_published(tunnel_id, wanted)
    stack.wait_rules_active(set(wanted))

    state = stack.cf_state()
    for record in stack.dns_records(state):
        assert "managed-by=flareport" in (record.get("comment") or ""), record
    assert stack.ingress(tunnel_id, state)[-1] == {"service": "http_status:404"}
    apps = stack.access_apps(state)
    assert [app["domain"] for app in apps] == ["web3.example.test"]
    # access.policy=bypass is DockFlare's system group public-default-bypass: a reusable bypass-everyone policy.
    policies = [state["access_policies"][link["id"]] for link in apps[0]["_policy_links"]]
    assert [(p["name"], p["decision"], p["reusable"]) for p in policies] == [
        ("flareport group public-default-bypass", "bypass", True)
    ]

    for name in ("web1", "web2", "web3"):
        host.docker.containers.get(name).stop(timeout=1)
    # While the grace period runs the rules stay published and say when they go.
    pending = wait_for_sync(
        lambda: [r for r in stack.rules() if r["hostname"] in wanted and r["status"] == "pending_deletion"],
        timeout=60,
        interval=0.2,
        what="rules pending deletion",
    )
    assert all(rule["delete_at"] for rule in pending)
    stack.wait_published(tunnel_id, {})
    state = stack.cf_state()
    assert stack.access_apps(state) == []
    assert stack.ingress(tunnel_id, state) == [{"service": "http_status:404"}]
    wait_for_sync(
        lambda: not any(r["hostname"] in wanted for r in stack.rules()), timeout=60, interval=0.3, what="rules gone"
    )
    for name in ("web1", "web2", "web3"):
        host.docker.containers.get(name).remove(force=True)


def test_a_container_restarted_within_its_grace_period_keeps_its_hostname(stack: E2EStack) -> None:
    host = stack.hosts["host1"]
    agent_id = stack.agents()[0]["agent_id"]
    tunnel_id = stack.agent(agent_id)["tunnel_id"]
    assert tunnel_id, "the first test enrols the agent"
    kept = host.labelled("kept", "kept.example.test", stack.image, grace_period="6")
    stack.wait_published(tunnel_id, {"kept.example.test": "http://kept:80"})
    record_id = next(r["id"] for r in stack.dns_records() if r["name"] == "kept.example.test")

    kept.stop(timeout=1)
    wait_for_sync(
        lambda: [r for r in stack.rules_of("kept.example.test") if r["status"] == "pending_deletion"],
        timeout=60,
        interval=0.2,
        what="kept.example.test pending deletion",
    )
    kept.start()
    wait_for_sync(
        lambda: [r for r in stack.rules_of("kept.example.test") if r["status"] == "active" and not r["delete_at"]],
        timeout=60,
        interval=0.2,
        what="kept.example.test active again",
    )
    # A later container with a shorter grace period, stopped afterwards, is deleted after the kept one's grace
    # period would have run out: once it is gone, a deletion of the kept one would have happened too.
    later = host.labelled("later", "later.example.test", stack.image, grace_period="7")
    wanted = {"kept.example.test": "http://kept:80", "later.example.test": "http://later:80"}
    stack.wait_published(tunnel_id, wanted)
    later.stop(timeout=1)
    stack.wait_published(tunnel_id, {"kept.example.test": "http://kept:80"})
    assert [r["id"] for r in stack.dns_records() if r["name"] == "kept.example.test"] == [record_id]
    kept.remove(force=True)
    later.remove(force=True)


def test_an_admin_deletes_a_stopped_containers_rule_before_its_grace_period_ends(stack: E2EStack) -> None:
    host = stack.hosts["host1"]
    agent_id = stack.agents()[0]["agent_id"]
    tunnel_id = stack.agent(agent_id)["tunnel_id"]
    assert tunnel_id, "the first test enrols the agent"
    gone = host.labelled("gone", "gone.example.test", stack.image, grace_period="3600")
    stack.wait_published(tunnel_id, {"gone.example.test": "http://gone:80"})
    gone.stop(timeout=1)
    wait_for_sync(
        lambda: [r for r in stack.rules_of("gone.example.test") if r["status"] == "pending_deletion"],
        timeout=60,
        interval=0.2,
        what="gone.example.test pending deletion",
    )

    accepted = stack.admin("POST", "/api/v1/rules/gone.example.test/force-delete", {})
    # An hour of grace period left, yet the record and the ingress rule go now.
    stack.wait_published(tunnel_id, {}, timeout=30)
    wait_for_sync(lambda: not stack.rules_of("gone.example.test"), timeout=30, interval=0.2, what="rule gone")
    [entry] = stack.admin("GET", "/api/v1/audit")["entries"]
    assert (entry["actor"], entry["target"], entry["intent_id"]) == ("api", "gone.example.test", accepted["intent_id"])
    gone.remove(force=True)


def test_an_admin_override_wins_over_labels_until_reverted(stack: E2EStack) -> None:
    host = stack.hosts["host1"]
    agent_id = stack.agents()[0]["agent_id"]
    tunnel_id = stack.agent(agent_id)["tunnel_id"]
    assert tunnel_id, "the first test enrols the agent"
    app = host.labelled("over", "over.example.test", stack.image)
    stack.wait_published(tunnel_id, {"over.example.test": "http://over:80"})

    stack.admin("PUT", "/api/v1/rules/over.example.test/override", {"service": "http://over:8080"})
    stack.wait_published(tunnel_id, {"over.example.test": "http://over:8080"}, timeout=30)
    [rule] = stack.rules_of("over.example.test")
    assert rule["overridden"] == ["service"]
    # The agent reporting the container again (its labels unchanged) does not undo the admin's override.
    app.restart(timeout=1)
    stack.wait_idle()
    stack.wait_published(tunnel_id, {"over.example.test": "http://over:8080"}, timeout=30)

    stack.admin("POST", "/api/v1/rules/over.example.test/revert", {})
    stack.wait_published(tunnel_id, {"over.example.test": "http://over:80"}, timeout=30)
    app.remove(force=True)


def _hop_counts(stack: E2EStack, name: str) -> dict[str, float]:
    """``flareport_trace_hop_seconds_count`` by hop from one process's /metrics (its port from its environment)."""
    if name == "api":
        url = stack.api_url + "/metrics"
    else:
        environ = Path(f"/proc/{stack.child(name).process.pid}/environ").read_bytes().split(b"\0")
        port = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"FLAREPORT_HEALTH_PORT="))
        url = f"http://127.0.0.1:{port}/metrics"
    status, text = http("GET", url)
    assert status == 200, text
    found = re.findall(r'^flareport_trace_hop_seconds_count\{hop="([a-z_]+)"\} (\S+)$', text, re.M)
    return {hop: float(value) for hop, value in found}


def test_a_started_containers_trace_is_observed_hop_by_hop_in_every_service(stack: E2EStack) -> None:
    host = stack.hosts["host1"]
    tunnel_id = stack.agent(stack.agents()[0]["agent_id"])["tunnel_id"]
    assert tunnel_id, "the first test enrols the agent"
    hops = {
        "agent": ("engine_to_agent", "agent_outbox"),
        "api": ("agent_to_api",),
        "reconciler": ("api_to_reconciler", "reconciler_to_commit"),
        "dns-worker": ("commit_to_worker", "worker_to_first_call", "first_call_to_converged", "control_plane",
                       "end_to_end"),
    }  # fmt: skip
    before = {name: _hop_counts(stack, name) for name in hops}
    host.labelled("traced", "traced.example.test", stack.image)
    stack.wait_published(tunnel_id, {"traced.example.test": "http://traced:80"}, timeout=60)

    missing: list[str] = []

    def all_observed() -> bool:
        missing[:] = []
        for name, names in hops.items():
            counts = _hop_counts(stack, name)
            missing.extend(f"{name}:{hop}" for hop in names if counts.get(hop, 0) <= before[name].get(hop, 0))
        return not missing

    try:
        wait_for_sync(all_observed, timeout=30, interval=0.2, what="every service's hops observed")
    except AssertionError:
        raise AssertionError(f"hops never observed after the container's start: {missing}") from None


def test_heartbeats_move_an_agents_last_seen_without_rewriting_its_record(stack: E2EStack) -> None:
    # A heartbeat that says what the last one said is contact, nothing more: the record (and with it the read-model
    # counter every open admin page re-renders on) stays as it is, and the API still shows when the agent was seen.
    key = stack.admin("POST", "/api/v1/keys", {"label": "beating"})["key"]
    status, registered = stack.api("POST", "/api/v1/agents/register", {"display_name": "beating"}, key=key)
    assert status == 200, registered
    agent_id = registered["agent_id"]
    store = redis.Redis.from_url(stack.env["REDIS_URL"])
    record_key = stack.keys.agent(agent_id)
    beat = {"tunnel": {"container_state": "absent"}, "docker_reachable": True}

    def heartbeat() -> datetime:
        status, answer = stack.api("POST", f"/api/v1/agents/{agent_id}/heartbeat", beat, key=key)
        assert status == 200, answer
        sent = datetime.fromisoformat(answer["server_time"])

        def shown() -> bool:
            last_seen = stack.agent(agent_id).get("last_seen")
            return last_seen is not None and datetime.fromisoformat(last_seen) >= sent - timedelta(milliseconds=1)

        wait_for_sync(shown, timeout=30, interval=0.05, what="the heartbeat's time as the agent's last seen")
        return sent

    inventories = [{"type": "inventory", "agent_id": agent_id, "seq": seq, "containers": []} for seq in (1, 2)]
    status, accepted = stack.api("POST", f"/api/v1/agents/{agent_id}/events", {"events": inventories}, key=key)
    assert (status, accepted["accepted"]) == (200, 2), accepted
    try:
        heartbeat()  # the first one records what it reports
        written = store.get(record_key)
        assert written is not None
        first = heartbeat()
        second = heartbeat()
        assert second > first
        assert store.get(record_key) == written, "two heartbeats that changed nothing rewrote the agent's record"
        listed = next(a for a in stack.agents() if a["agent_id"] == agent_id)
        assert datetime.fromisoformat(listed["last_seen"]) >= second - timedelta(milliseconds=1), "the list agrees"
        assert (listed["last_seq"], stack.agent(agent_id)["last_seq"]) == (2, 2), "the last event accepted"
    finally:
        store.close()
