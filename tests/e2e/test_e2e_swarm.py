"""The whole stack with an agent on a real single-node Swarm manager: a labelled service is published through the
control plane to the emulator, survives a scale to zero and back within its grace period, and is unpublished after
the grace period once removed; cloudflared runs as a Swarm service whose token is a Swarm secret."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import docker
import docker.types
import pytest

from flareport_cli.localredis import free_port
from fptest.dockerd import LocalDockerd, dockerd_available
from fptest.e2e_stack import E2EStack
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    return stack_factory(GRACE_PERIOD_SECONDS="3")


@pytest.fixture(scope="module")
def manager(stack: E2EStack) -> Iterator[LocalDockerd]:
    """A Swarm manager host with the stack's stand-in cloudflared image and an agent process of its own."""
    if not dockerd_available():
        pytest.fail("dockerd is required for the Swarm system test (make deps installs docker.io)")
    engine = LocalDockerd()
    try:
        engine.start()
        engine.load_busybox_image(stack.image)
        engine.swarm_init()
        yield engine
    finally:
        engine.close()


def test_a_swarm_service_is_published_follows_scaling_and_is_removed_after_the_grace_period(
    stack: E2EStack, manager: LocalDockerd
) -> None:
    with manager.client() as client:
        run(stack, manager, client)


def run(stack: E2EStack, engine: LocalDockerd, manager: docker.DockerClient) -> None:
    # The stack's own agent (on its Podman host) registers first: it must not be taken for the Swarm's.
    known = {stack.wait_new_agent(set())["agent_id"]}
    key = stack.admin("POST", "/api/v1/keys", {"label": "swarm"})["key"]
    stack.start_service(
        "agent",
        name="agent-swarm",
        FLAREPORT_MASTER_URL=stack.api_url,
        FLAREPORT_API_KEY=key,
        DOCKER_HOST=engine.docker_host,
        AGENT_DATA_DIR=str(stack.workdir / "swarm-agent"),
        FLAREPORT_HEALTH_PORT=str(free_port()),
    )
    agent_id = stack.wait_new_agent(known)["agent_id"]
    tunnel_id = stack.enroll(agent_id, "swarm")

    def cloudflared() -> list[docker.models.services.Service]:
        found: list[docker.models.services.Service] = manager.services.list(
            filters={"label": "flareport.managed=cloudflared"}
        )
        return found

    (service,) = wait_for_sync(cloudflared, timeout=60, interval=0.2, what="the cloudflared service")
    (secret,) = manager.secrets.list()
    assert secret.name.startswith("flareport-tunnel-token-")
    spec = json.dumps(service.attrs["Spec"])
    assert "TUNNEL_TOKEN_FILE=/run/secrets/flareport-tunnel-token" in spec
    token = json.loads((stack.workdir / "swarm-agent" / "state.json").read_text())["tunnel_token"]
    assert json.loads(base64.b64decode(token))["t"] == tunnel_id
    assert token not in spec, "the token is in the Swarm secret only"

    web = manager.services.create(
        stack.image,
        name="web",
        labels={
            "flareport.enable": "true",
            "flareport.hostname": "web.example.test",
            "flareport.service": "http://web:80",
        },
        mode=docker.types.ServiceMode("replicated", replicas=2),
    )
    wanted = {"web.example.test": "http://web:80"}
    stack.wait_published(tunnel_id, wanted)
    stack.wait_rules_active(set(wanted))

    web.reload()
    web.scale(0)
    wait_for_sync(
        lambda: [r for r in stack.rules_of("web.example.test") if r["status"] == "pending_deletion"],
        timeout=60,
        interval=0.2,
        what="the rule of the service scaled to zero pending deletion",
    )
    web.reload()
    web.scale(1)
    stack.wait_rules_active(set(wanted))
    assert stack.published(tunnel_id, wanted) is None, "scaled back within the grace period: still published"

    web.remove()
    stack.wait_published(tunnel_id, {})
    wait_for_sync(
        lambda: not stack.rules_of("web.example.test"), timeout=60, interval=0.3, what="the rule gone after the grace"
    )
