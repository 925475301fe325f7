"""A ``docker compose up`` through the real agent on Podman: every container created first, then started one after
another. The agent tells the master how many are still to start (``EventBatch.starting``), so the run is folded
into one Cloudflare job, and the job goes as soon as the last container started, not after the coalescing window.

The stack's window is made long (30 s, bounded at 60 s) so that the difference is plain: without the agent's word
the run would be published in two jobs (the first start at once, the rest after the window), or only once the
window ended."""

from __future__ import annotations

import pytest

from fptest.e2e_stack import E2EStack, Host
from fptest.waiting import wait_for_sync

from .conftest import Enrolled, StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)

WINDOW_MS = 30_000
PUT = "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations"
BATCH = "POST /zones/{zone_id}/dns_records/batch"


@pytest.fixture(scope="module")
def enrolled(stack_factory: StackFactory) -> Enrolled:
    stack = stack_factory(FLAREPORT_COALESCE_WINDOW_MS=str(WINDOW_MS), FLAREPORT_COALESCE_MAX_WINDOW_MS="60000")
    return enrol_first_agent(stack, "compose")


def _create(host: Host, stack: E2EStack, name: str) -> None:
    labels = {
        "flareport.enable": "true",
        "flareport.hostname": f"{name}.example.test",
        "flareport.service": f"http://{name}:80",
    }
    host.docker.containers.create(stack.image, name=name, labels=labels)


def test_a_compose_run_is_one_job_sent_when_its_last_container_started(enrolled: Enrolled) -> None:
    stack, host = enrolled.stack, enrolled.host
    stack.wait_idle()
    names = [f"svc{n}" for n in range(4)]
    for name in names:
        _create(host, stack, name)
    before = stack.writes()
    first, rest = names[:2], names[2:]
    for name in first:
        host.docker.containers.get(name).start()
    # The first starts reached the reconciler (their rules exist) while two containers are still to start: the
    # tunnel waits for the run instead of sending a job for them alone.
    wait_for_sync(
        lambda: all(stack.rules_of(f"{n}.example.test") for n in first), timeout=60, interval=0.1, what="rules"
    )
    for name in rest:
        host.docker.containers.get(name).start()
    wanted = {f"{n}.example.test": f"http://{n}:80" for n in names}
    # Well before the 30 s window could end: the last start's "nothing left to start" sent the held job at once.
    stack.wait_published(enrolled.tunnel_id, wanted, timeout=20)
    after = stack.writes()
    assert after.get(PUT, 0) - before.get(PUT, 0) == 1, "the whole run in one configuration write"
    assert after.get(BATCH, 0) - before.get(BATCH, 0) == 1, "and one DNS batch"
