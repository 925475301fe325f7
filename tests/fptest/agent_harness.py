"""Helpers of the agent integration tests: labelled stand-in containers and agents running in the test's loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from flareport_agent.agent import Agent, Tuning
from flareport_agent.cloudflared import MANAGED_LABEL, MANAGED_VALUE
from flareport_cli.localpodman import BUSYBOX_IMAGE
from flareport_common.messages.events import ContainerStart, Inventory
from flareport_common.messages.rules import ContainerInfo

KEY = "agent-key-0123456789"


@dataclass
class Containers:
    """Creates labelled stand-in containers for one test and removes all of them afterwards."""

    client: docker.DockerClient
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def run(self, labels: dict[str, str], name: str | None = None) -> Any:
        return self.client.containers.run(
            BUSYBOX_IMAGE,
            detach=True,
            name=name or f"fpt-{self.run_id}-{uuid.uuid4().hex[:6]}",
            labels={**labels, "fptest.run": self.run_id},
            # No network: netavark setup is most of a container start on a small machine, and tests need none.
            network_mode="none",
        )

    def run_many(self, labels_for: Callable[[int], dict[str, str]], count: int, workers: int = 8) -> list[Any]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda i: self.run(labels_for(i), name=f"fpt-{self.run_id}-{i:04d}"), range(count)))

    def cleanup(self) -> None:
        mine = self.client.containers.list(all=True, filters={"label": f"fptest.run={self.run_id}"})
        owned = self.client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: c.remove(force=True), [*mine, *owned]))


FAST = Tuning(
    linger_seconds=0.01,
    heartbeat_seconds=0.2,
    poll_wait_seconds=1.0,
    reregister_seconds=0.5,
    register_backoff_max=0.5,
    health_host="127.0.0.1",
)


@dataclass
class RunningAgent:
    agent: Agent
    task: asyncio.Task[int]

    async def stop(self) -> int:
        self.agent.stop()
        return await asyncio.wait_for(self.task, 20)


def latest_info(events: list[Any], container_id: str) -> ContainerInfo | None:
    """The newest report of a container, from a container_start or an inventory snapshot."""
    found: ContainerInfo | None = None
    for event in events:
        if isinstance(event, ContainerStart) and event.container.container_id == container_id:
            found = event.container
        elif isinstance(event, Inventory):
            found = next((c for c in event.containers if c.container_id == container_id), found)
    return found


# The agent's engine-facing tests run on Podman and on a real Docker Engine (see tests/integration/agent/conftest.py).
both_engines = pytest.mark.parametrize("engine", ["podman", "dockerd"], indirect=True)
