"""Faults during work, each ending in full convergence (issue 8, system test 3).

One stack with two replicas of the reconciler and the dns-worker (and a second API process) is shared by the tests;
each test publishes its own hostnames, checks that Cloudflare ends up holding exactly them (one CNAME per hostname,
ingress rules before the catch-all), and removes them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from flareport_cli.localredis import free_port
from fptest.e2e_stack import CONVERGE_TIMEOUT, Host
from fptest.waiting import wait_for_sync

from .conftest import Enrolled, StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def enrolled(stack_factory: StackFactory) -> Enrolled:
    stack = stack_factory(
        GRACE_PERIOD_SECONDS="2",
        # A killed replica's messages and plans are taken over quickly, and its Cloudflare lease runs out soon.
        FLAREPORT_CLAIM_IDLE_SECONDS="3",
        FLAREPORT_TARGET_LEASE_MS="3000",
        CLOUDFLARE_REQUEST_TIMEOUT_SECONDS="2",
    )
    enrolled = enrol_first_agent(stack, "faults")
    stack.start_service("reconciler", "reconciler-2")
    stack.start_service("dns-worker", "dns-worker-2")
    stack.start_service("api", "api-2", FLAREPORT_API_PORT=str(free_port()))
    return enrolled


@pytest.fixture
def cleanup(enrolled: Enrolled) -> Iterator[None]:
    """Every test ends with its containers removed and Cloudflare emptied again (also after a failure)."""
    yield
    enrolled.stack.emu("DELETE", "/__emulator/faults")
    enrolled.host.podman.remove_all()
    enrolled.stack.wait_published(enrolled.tunnel_id, {})


def _burst(host: Host, image: str, prefix: str, count: int, faults: Mapping[int, Callable[[], None]]) -> dict[str, str]:
    """Start ``count`` labelled containers one after another, injecting ``faults[i]`` before the i-th."""
    wanted = {}
    for index in range(count):
        if index in faults:
            faults[index]()
        name = f"{prefix}{index}"
        host.labelled(name, f"{name}.example.test", image)
        wanted[f"{name}.example.test"] = f"http://{name}:80"
    return wanted


def _converged(enrolled: Enrolled, wanted: dict[str, str], timeout: float = CONVERGE_TIMEOUT) -> None:
    enrolled.stack.wait_published(enrolled.tunnel_id, wanted, timeout=timeout)
    enrolled.stack.wait_rules_active(set(wanted), timeout=timeout)


def test_sigkill_of_each_control_plane_process_during_a_burst(enrolled: Enrolled, cleanup: None) -> None:
    stack = enrolled.stack

    def kill_and_replace(name: str, service: str) -> Callable[[], None]:
        def act() -> None:
            stack.kill(name)
            if service == "api":
                stack.restart_api()
            else:
                stack.start_service(service, name)

        return act

    faults = {
        4: kill_and_replace("reconciler", "reconciler"),
        9: kill_and_replace("dns-worker", "dns-worker"),
        14: kill_and_replace("api", "api"),
        19: kill_and_replace("reconciler-2", "reconciler"),
        24: kill_and_replace("dns-worker-2", "dns-worker"),
    }
    wanted = _burst(enrolled.host, stack.image, "kill", 30, faults)
    # A job the killed dns-worker had taken goes to the other replica after FLAREPORT_CLAIM_IDLE_SECONDS (3 s here).
    _converged(enrolled, wanted, timeout=120)


def test_redis_restarted_mid_burst_loses_nothing(enrolled: Enrolled, cleanup: None) -> None:
    stack = enrolled.stack
    assert stack.dev is not None and stack.dev.redis is not None
    redis = stack.dev.redis
    wanted = _burst(enrolled.host, stack.image, "aof", 20, {10: lambda: redis.restart(kill=True)})
    _converged(enrolled, wanted)


def test_cloudflare_errors_rate_limits_and_timeouts_are_retried_until_converged(
    enrolled: Enrolled, cleanup: None
) -> None:
    stack = enrolled.stack
    faults = [
        {"endpoint": "POST /zones/{zone_id}/dns_records/batch", "sequence": [429, 503, "drop"], "retry_after": 1},
        {"endpoint": "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations", "sequence": [500, 429, 502]},
        # Slower than the dns-worker's 2 s request timeout: these calls time out.
        {"endpoint": "GET /zones/{zone_id}/dns_records", "latency_ms": 2500, "times": 2},
        {"endpoint": "*", "error_rate": 0.2, "error_status": 503, "times": 15},
    ]
    stack.emu("POST", "/__emulator/faults?replace=true", faults)
    wanted = _burst(enrolled.host, stack.image, "flaky", 12, {})
    _converged(enrolled, wanted)
    fired = stack.emu("GET", "/__emulator/faults")
    assert fired, "the fault rules are listed"


def test_containers_changing_while_the_master_is_down_are_published_when_it_is_back(
    enrolled: Enrolled, cleanup: None
) -> None:
    stack = enrolled.stack
    host = enrolled.host
    before = _burst(host, stack.image, "early", 3, {})
    _converged(enrolled, before)

    stack.kill("api")
    stack.kill("api-2")
    host.docker.containers.get("early0").stop(timeout=1)
    during = _burst(host, stack.image, "offline", 3, {})
    assert stack.api("GET", "/healthz")[0] == 0, "the master is down while the containers change"
    stack.restart_api()
    stack.start_service("api", "api-2", FLAREPORT_API_PORT=str(free_port()))

    wanted = {**{h: s for h, s in before.items() if not h.startswith("early0.")}, **during}
    _converged(enrolled, wanted)
    wait_for_sync(
        lambda: not stack.rules_of("early0.example.test"), timeout=60, interval=0.3, what="early0's rule deleted"
    )
