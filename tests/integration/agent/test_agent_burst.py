"""Bursts and a cut event stream against a real engine: the master ends up knowing exactly what runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import docker

from flareport_cli.localpodman import BUSYBOX_IMAGE, LocalPodman
from fptest.agent_harness import Containers, RunningAgent, latest_info
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for


def labels(i: int) -> dict[str, str]:
    return {
        "dockflare.enable": "true",
        "dockflare.hostname": f"h{i}.example.com",
        "dockflare.service": f"http://svc{i}:80",
    }


async def test_a_burst_of_200_containers_loses_nothing(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent()
    made = await asyncio.to_thread(containers.run_many, labels, 200)
    ids = {c.id: i for i, c in enumerate(made)}

    async def all_running() -> bool:
        return ids.keys() <= master.running().keys()

    await wait_for(all_running, timeout=60, what="all 200 containers reported running")
    for cid, i in ids.items():
        info = latest_info(master.events, cid)
        assert info is not None and [r.hostname for r in info.rules] == [f"h{i}.example.com"], (
            f"container {i} should be reported with its own rule, got {info}"
        )
    with ThreadPoolExecutor(8) as pool:
        await asyncio.to_thread(lambda: list(pool.map(lambda c: c.remove(force=True), made)))

    async def none_running() -> bool:
        return not (ids.keys() & master.running().keys())

    await wait_for(none_running, timeout=60, what="all 200 containers reported gone")
    seqs = [getattr(e, "seq", 0) for e in master.container_events()]
    assert seqs == sorted(seqs), "events must arrive in sequence order"


async def test_a_cut_event_stream_is_recovered_by_the_inventory_snapshot(
    master: MasterDouble,
    containers: Containers,
    podman: LocalPodman,
    docker_host: str,
    start_agent: Callable[..., RunningAgent],
) -> None:
    start_agent()
    created: list[str] = []

    def burst() -> None:
        client = docker.DockerClient(base_url=docker_host)
        with ThreadPoolExecutor(6) as pool:

            def one(i: int) -> None:
                # Creations racing the engine's shutdown may fail; the truth is listed from the engine at the end.
                with contextlib.suppress(Exception):
                    created.append(
                        client.containers.run(
                            BUSYBOX_IMAGE,
                            detach=True,
                            name=f"fpt-{containers.run_id}-{i:04d}",
                            labels={**labels(i), "fptest.run": containers.run_id},
                            network_mode="none",
                        ).id
                    )

            list(pool.map(one, range(60)))
        client.close()

    burst_done = asyncio.create_task(asyncio.to_thread(burst))

    async def some_seen() -> bool:
        return len(set(created) & master.running().keys()) >= 10 or burst_done.done()

    await wait_for(some_seen, timeout=60, what="the burst under way")
    await asyncio.to_thread(podman.stop)  # cut: the agent's event stream ends, containers keep running
    await burst_done
    # While the engine's API is down (the agent cannot watch), containers change behind its back.
    for i in range(100, 106):
        await asyncio.to_thread(
            podman.podman,
            "run", "-d", "--network", "none", "--name", f"fpt-{containers.run_id}-{i:04d}",
            "--label", f"fptest.run={containers.run_id}",
            *[arg for k, v in labels(i).items() for arg in ("--label", f"{k}={v}")],
            BUSYBOX_IMAGE,
        )  # fmt: skip
    gone = created[:3]
    for cid in gone:
        await asyncio.to_thread(podman.podman, "rm", "-f", cid)
    await asyncio.to_thread(podman.start)

    client = docker.DockerClient(base_url=docker_host)
    truth = {c.id for c in client.containers.list(filters={"label": f"fptest.run={containers.run_id}"})}
    client.close()
    containers.client = docker.DockerClient(base_url=docker_host)  # the old pool's connections died with the engine
    assert len(truth) >= 6

    async def converged() -> bool:
        reported = {cid for cid in master.running() if cid in truth or cid in created}
        return reported == truth

    await wait_for(converged, timeout=60, what="the master's view to equal the engine's after the reconnect")
    assert not set(gone) & master.running().keys(), "containers removed during the cut must be reported gone"
