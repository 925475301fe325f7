"""Podman's file events logger truncates its file and the event stream repeats old events: the agent reports none.

The engine here has a 32 KB events file, so a dozen containers make it truncate several times. Before the agent
recognised the repeats, each truncation re-reported the starts of containers that had already been removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from fptest.agent_harness import Containers, RunningAgent
from fptest.agent_master_double import MasterDouble
from fptest.e2e_podman import IsolatedPodman
from fptest.waiting import wait_for

# Fat events (Podman copies every label into each event) fill the small file after a few containers.
PADDING = {f"org.example.padding{i}": "x" * 200 for i in range(5)}
CHURNED = 12


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = Path(tmp_path_factory.mktemp("small-events"))
    engine = IsolatedPodman(workdir, engine_conf='events_logfile_max_size = "32k"\n')
    engine.start()
    engine.build_busybox_image()
    yield engine.docker_host
    engine.close()


def repeats() -> float:
    return REGISTRY.get_sample_value("flareport_agent_docker_events_repeated_total") or 0.0


def published_again(master: MasterDouble, container_ids: list[str]) -> list[str]:
    """The containers the master's view (events and snapshots, in order) showed running, then gone, then running."""
    before: set[str] = set()
    gone: set[str] = set()
    again: list[str] = []
    for state in master.views():
        gone |= before - set(state)
        again += [cid for cid in container_ids if cid in gone and cid in state and cid not in again]
        before = set(state)
    return again


async def test_a_truncated_events_file_makes_no_container_start_again(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent()

    await wait_for(master.inventory_seen, what="the first inventory snapshot")
    repeats_before = repeats()
    churned = []
    for i in range(CHURNED):
        container = await asyncio.to_thread(containers.run, {**PADDING, **labels(f"churn{i}")})
        churned.append(container.id)
        await wait_for(lambda: is_running(master, churned[-1]), what=f"churn{i} reported running")
        await asyncio.to_thread(container.remove, force=True)

    async def all_gone() -> bool:
        return not set(churned) & set(master.running())

    await wait_for(all_gone, what="every churned container reported gone")
    assert repeats() > repeats_before, "the engine's events file was never truncated; the test proved nothing"

    last = await asyncio.to_thread(containers.run, labels("last"))
    await wait_for(lambda: is_running(master, last.id), what="a start after the truncations")
    assert published_again(master, churned) == [], "removed containers were reported running again"
    assert set(master.running()) == {last.id}, "only the container still running is published"


def labels(name: str) -> dict[str, str]:
    return {"flareport.enable": "true", "flareport.hostname": f"{name}.example.com", "flareport.service": "http://w:80"}


async def is_running(master: MasterDouble, container_id: str) -> bool:
    return container_id in master.running()
