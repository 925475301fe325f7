"""Agent integration harness: a real Podman engine (one per session), the master double, and running agents.

The engine has storage of its own, so containers of other test suites on the machine never show up, and an events
file large enough that Podman never truncates it during the session: a truncation makes the agent subscribe again
(``replay.py``), which changes which events it reports, and the lifecycle tests assert exact event sequences.
``test_agent_event_replay.py`` tests the truncation itself on an engine of its own.

Tests that exercise the engine API (events, inventory, cloudflared) run on a real Docker Engine as well
(``both_engines``: ``fptest.dockerd``, one ``dockerd`` per session, started on first use); the Swarm tests get a
second one that is a single-node Swarm manager (``engine="swarm"``).

On a developer machine with Docker, set FLAREPORT_TEST_DOCKER_HOST to use that engine instead of starting Podman
(the busybox stand-in image must then exist there). Every container a test creates carries the label
``fptest.run=<id>`` and is removed at the end of the test, together with the agent's cloudflared.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import pytest

from flareport_agent.agent import Agent, Tuning
from flareport_agent.cloudflared import NETWORK
from flareport_cli.localpodman import BUSYBOX_IMAGE, LocalPodman, podman_available
from flareport_common.settings import AgentSettings
from fptest.agent_harness import FAST, KEY, Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.dockerd import LocalDockerd, dockerd_available
from fptest.e2e_podman import IsolatedPodman


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPodman]:
    if not podman_available():
        pytest.fail("podman and runc are required for the agent integration tests (make deps installs them)")
    engine = IsolatedPodman(tmp_path_factory.mktemp("podman"), engine_conf='events_logfile_max_size = "256m"\n')
    engine.start()
    engine.build_busybox_image()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[LocalDockerd]:
    """A real Docker Engine, started once and only when a test asks for it (``both_engines``)."""
    if not dockerd_available():
        pytest.fail("dockerd is required for the agent integration tests (make deps installs docker.io)")
    engine = LocalDockerd()
    try:
        engine.start()
        engine.load_busybox_image()
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def swarm() -> Iterator[LocalDockerd]:
    """A real Docker Engine that is a single-node Swarm manager, apart from ``dockerd``: Swarm mode changes what
    the agent watches and how it runs cloudflared."""
    if not dockerd_available():
        pytest.fail("dockerd is required for the agent's Swarm tests (make deps installs docker.io)")
    engine = LocalDockerd()
    try:
        engine.start()
        engine.load_busybox_image()
        engine.swarm_init()
        yield engine
    finally:
        engine.close()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """``podman`` unless a test is parametrized with ``both_engines`` (``fptest.agent_harness``)."""
    return str(getattr(request, "param", "podman"))


@pytest.fixture
def docker_host(engine: str, request: pytest.FixtureRequest) -> str:
    if os.environ.get("FLAREPORT_TEST_DOCKER_HOST"):
        return os.environ["FLAREPORT_TEST_DOCKER_HOST"]
    if engine == "dockerd":
        started: LocalDockerd = request.getfixturevalue("dockerd")
        return started.docker_host
    if engine == "swarm":
        manager: LocalDockerd = request.getfixturevalue("swarm")
        return manager.docker_host
    podman: LocalPodman = request.getfixturevalue("podman")
    return podman.docker_host


@pytest.fixture
def dclient(docker_host: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_host)
    yield client
    client.close()


@pytest.fixture
def containers(dclient: docker.DockerClient) -> Iterator[Containers]:
    made = Containers(dclient)
    yield made
    made.cleanup()
    for network in dclient.networks.list(names=[NETWORK]):
        if network.name == NETWORK:
            network.remove()


@pytest.fixture
async def master() -> AsyncIterator[MasterDouble]:
    double = MasterDouble(keys={KEY})
    await double.start()
    yield double
    await double.stop()


@pytest.fixture
def agent_settings(master: MasterDouble, docker_host: str, tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        master_url=master.url,
        api_key=KEY,
        docker_host=docker_host,
        cloudflared_image=BUSYBOX_IMAGE,
        data_dir=str(tmp_path / "agent-data"),
        label_prefix=None,
        log_level="info",
        log_format="console",
        tz=None,
        health_port=0,
    )


@pytest.fixture
async def start_agent(
    agent_settings: AgentSettings,
) -> AsyncIterator[Callable[..., RunningAgent]]:
    running: list[RunningAgent] = []

    def start(tuning: Tuning = FAST, **overrides: Any) -> RunningAgent:
        agent = Agent(replace(agent_settings, **overrides), tuning)
        handle = RunningAgent(agent, asyncio.create_task(agent.run()))
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if not handle.task.done():
            await handle.stop()
