"""Redis Sentinel failover under the whole stack: a primary, replicas and three Sentinels (real processes), every
control-plane service configured with REDIS_SENTINELS only, two hosts with their agents.

The primary is SIGKILLed (no shutdown, no last fsync) in the middle of an enrolment, in the middle of a burst of
container starts and stops on both hosts, and once while no replica had the last writes. What must hold
afterwards, with nobody touching anything: Cloudflare converges to exactly what the containers want (one CNAME per
hostname: no duplicates; every wanted hostname there: no lost rules; stopped containers' hostnames gone), the read
model shows every wanted rule active, the enrolment completes with exactly one tunnel, and no DNS record of a
wanted hostname is deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flareport_cli.localsentinel import LocalSentinelSet
from fptest.e2e_stack import E2EStack, Host
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@dataclass
class HaStack:
    stack: E2EStack
    sentinels: LocalSentinelSet
    agents: dict[str, str]  # host name -> agent id
    tunnels: dict[str, str]  # host name -> tunnel id, once enrolled


@pytest.fixture(scope="module")
def ha(stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaStack]:
    # A replica per failover: no test waits for an old primary's return (Sentinel notices it only every 10 s).
    sentinels = LocalSentinelSet(Path(tmp_path_factory.mktemp("sentinels")), replicas=3).start()
    stack: E2EStack | None = None
    try:
        stack = stack_factory(
            **sentinels.env,
            GRACE_PERIOD_SECONDS="2",
            # A job or event whose handler died with a connection is taken over soon after the failover.
            FLAREPORT_CLAIM_IDLE_SECONDS="3",
            FLAREPORT_TARGET_LEASE_MS="3000",
        )
        agent_id = stack.wait_new_agent(set())["agent_id"]
        yield HaStack(stack, sentinels, {"host1": agent_id}, {"host1": stack.enroll(agent_id, "ha-host1")})
    finally:
        # The services first, while their Redis is there: stopped without it, each waits out its shutdown
        # timeout trying to reach it.
        if stack is not None:
            stack.close()
        sentinels.stop()


def _host(ha: HaStack, name: str) -> Host:
    """The host ``name``, with its agent registered; added on first use (the tests share it: starting an engine
    is what costs time)."""
    if name not in ha.stack.hosts:
        known = {a["agent_id"] for a in ha.stack.agents()}
        ha.stack.add_host(name)
        ha.agents[name] = ha.stack.wait_new_agent(known)["agent_id"]
    return ha.stack.hosts[name]


def _enrolled(ha: HaStack, name: str) -> Host:
    host = _host(ha, name)
    if name not in ha.tunnels:
        ha.tunnels[name] = ha.stack.enroll(ha.agents[name], f"ha-{name}")
    return host


def _kill_primary(ha: HaStack, killed: list[float]) -> None:
    ha.sentinels.kill_master()
    killed.append(time.monotonic())


def _host_burst(host: Host, image: str, count: int, stop_every: int, at: dict[int, Callable[[], None]]) -> set[str]:
    """Start ``count`` labelled containers, stopping every ``stop_every``-th right after the next one started;
    ``at[i]`` runs before the i-th start. The hostnames that should stay published."""
    wanted: set[str] = set()
    previous = None
    for index in range(count):
        if index in at:
            at[index]()
        name = f"{host.name}-b{index}"
        container = host.labelled(name, f"{name}.example.test", image)
        wanted.add(f"{name}.example.test")
        if previous is not None:
            previous.stop(timeout=1)
            wanted.discard(f"{previous.name}.example.test")
            previous = None
        if index % stop_every == stop_every - 1:
            previous = container
    return wanted


def test_primary_killed_during_an_enrolment_the_agent_ends_active_with_one_tunnel(ha: HaStack) -> None:
    stack = ha.stack
    ha.sentinels.heal(replicas=1)
    name = next(n for n in ("host2", "host3") if n not in ha.tunnels)  # host2 unless the burst enrolled it
    host = _host(ha, name)
    agent_id = ha.agents[name]
    # The API answers 202 only once a replica holds the enrolment (REDIS_WAIT_REPLICAS): killing the primary right
    # after the answer must not lose it.
    stack.admin("POST", f"/api/v1/agents/{agent_id}/enroll", {"tunnel_name": f"ha-{name}"})
    ha.sentinels.kill_master()

    def active() -> dict[str, object]:
        status, answer = stack.api("GET", f"/api/v1/agents/{agent_id}")  # 503 while the master is replaced
        agent = answer["agent"] if status == 200 else {}
        return dict(agent) if agent.get("status") == "active" and agent.get("tunnel_id") else {}

    record = wait_for_sync(
        active,
        timeout=120,
        interval=0.3,
        what="the agent enrolled during the failover active with its tunnel",
    )
    tunnels = [t for t in stack.cf_state()["tunnels"].values() if t["name"] == f"ha-{name}" and not t["deleted_at"]]
    assert len(tunnels) == 1, f"exactly one tunnel should exist for the enrolment, got {len(tunnels)}"
    ha.tunnels[name] = str(record["tunnel_id"])
    late = host.labelled("late", "late.example.test", stack.image)
    stack.wait_published(str(record["tunnel_id"]), {"late.example.test": "http://late:80"})
    late.remove(force=True)  # the next test wants exactly its own hostnames on this tunnel


def test_primary_killed_during_a_burst_from_two_agents_loses_nothing_and_duplicates_nothing(ha: HaStack) -> None:
    stack = ha.stack
    ha.sentinels.heal(replicas=1)
    killed: list[float] = []
    wanted: dict[str, set[str]] = {}
    errors: list[BaseException] = []

    def burst(host: Host, at: dict[int, Callable[[], None]]) -> None:
        try:
            wanted[host.name] = _host_burst(host, stack.image, 8, 3, at)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=burst, args=(stack.hosts["host1"], {4: lambda: _kill_primary(ha, killed)})),
        threading.Thread(target=burst, args=(_enrolled(ha, "host2"), {})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, f"the container engine failed: {errors}"
    assert killed, "the primary should have been killed during the burst"

    for name, hostnames in wanted.items():
        # Exactly these CNAMEs (no duplicate, none missing, the stopped containers' gone) and ingress rules.
        stack.wait_published(ha.tunnels[name], {h: f"http://{h.split('.')[0]}:80" for h in hostnames}, timeout=120)
    every = set().union(*wanted.values())
    stack.wait_rules_active(every, timeout=60)
    print(f"converged {time.monotonic() - killed[0]:.1f}s after the primary was killed")
    records = [r["name"] for r in stack.dns_records()]
    assert sorted(set(records)) == sorted(records), "Cloudflare should hold no duplicate DNS record"

    def stopped_rules() -> list[str]:
        return [r["hostname"] for r in stack.rules() if r["hostname"] not in every and "-b" in r["hostname"]]

    wait_for_sync(lambda: not stopped_rules(), timeout=30, interval=0.3, what="no rule of a stopped container left")


def test_writes_the_replica_never_got_are_healed_without_deleting_anything(ha: HaStack) -> None:
    """Asynchronous replication at its worst: the replicas are cut off (their master link fails to authenticate), a
    container is published through the primary alone, then the primary dies and a stale replica is promoted. The
    new primary does not know the rule; the reconciler notices the new data set, has the agents resend their
    inventories and plans everything again: the rule is back and active, and Cloudflare saw no deletion."""
    stack, sentinels = ha.stack, ha.sentinels
    sentinels.heal(replicas=1)
    stale = sentinels.replicas_online()  # every replica is cut off, so whichever is promoted lacks the writes
    for replica in stale:
        with sentinels.client(replica) as link:
            link.config_set("masterauth", "not-the-password")
            link.client_kill_filter(_type="master")
    try:
        wait_for_sync(lambda: not sentinels.replicas_online(), timeout=10, interval=0.1, what="the replicas cut off")
        stack.hosts["host1"].labelled("unreplicated", "unreplicated.example.test", stack.image)
        stack.wait_rules_active({"unreplicated.example.test"})
        kept = _kept_records(stack)
        old = sentinels.kill_master()
    finally:
        for replica in stale:
            with sentinels.client(replica) as link:
                link.config_set("masterauth", sentinels.password)
    new = sentinels.wait_failover(old.port)
    assert new.port in {r.port for r in stale}
    with sentinels.client(new) as primary:
        assert not primary.exists("fp:rule:unreplicated.example.test"), "the promoted replica should lack the rule"

    def healed() -> bool:
        status, answer = stack.api("GET", "/api/v1/rules")  # 503 until the new primary is in use
        rules = answer["rules"] if status == 200 else []
        return any(r["hostname"] == "unreplicated.example.test" and r["status"] == "active" for r in rules)

    wait_for_sync(healed, timeout=60, interval=0.3, what="the lost rule active again")
    records = [r for r in stack.dns_records() if r["name"] == "unreplicated.example.test"]
    assert len(records) == 1, f"one CNAME for the healed hostname, got {len(records)}"
    missing = kept - {r["id"] for r in stack.dns_records()}
    assert not missing, f"records of active rules were deleted (or replaced) after the failover: {len(missing)}"


def _kept_records(stack: E2EStack) -> set[str]:
    """Ids of the DNS records of every active rule: a record deleted and created again would get a new id."""
    active = {r["hostname"] for r in stack.rules() if r["status"] == "active"}
    return {r["id"] for r in stack.dns_records() if r["name"] in active}
