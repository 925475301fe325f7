"""On Podman the agent keeps a second event subscription half of Podman's 250 ms events tick after the first (events
reach it up to 125 ms sooner); each event still reaches the master once, in order. On Docker, one subscription."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from flareport_common.messages.events import ContainerStart
from fptest.agent_harness import Containers, RunningAgent, both_engines
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for

LABELS = {"flareport.enable": "true", "flareport.service": "http://web:80"}


async def agent_metrics(running: RunningAgent) -> dict[str, float]:
    url = f"http://127.0.0.1:{running.agent.health_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stream = sample.labels.get("stream")
            found[sample.name + (f"{{{stream}}}" if stream else "")] = sample.value
    return found


def starts(master: MasterDouble) -> list[str]:
    return [e.container.container_id for e in master.container_events() if isinstance(e, ContainerStart)]


@both_engines
async def test_events_come_from_both_subscriptions_on_podman_and_reach_the_master_once_in_order(
    engine: str, master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    running = start_agent()
    await wait_for(master.inventory_seen, what="the first inventory snapshot")

    async def serving() -> bool:
        return running.agent.health_port is not None

    await wait_for(serving, what="the agent's health port")
    before = await agent_metrics(running)
    streams = 2 if engine == "podman" else 1
    assert before.get("flareport_agent_docker_event_streams") == streams

    started: list[str] = []

    async def reported() -> bool:
        return starts(master)[-1:] == started[-1:]

    async def second_was_first() -> bool:
        now = await agent_metrics(running)
        return now.get("flareport_agent_docker_events_first_total{second}", 0) > before.get(
            "flareport_agent_docker_events_first_total{second}", 0
        )

    # Containers started at random points of the engine's tick until the second subscription delivered an event
    # first (half of them, on average, with the two subscriptions half a tick apart); on Docker, a fixed few.
    for n in range(30 if streams == 2 else 4):
        await asyncio.sleep(random.uniform(0, 0.25))  # not a wait for anything: a random point of the tick
        started.append(containers.run({**LABELS, "flareport.hostname": f"s{n}.example.com"}).id)
        await wait_for(reported, what=f"the start of container {n} reported")
        if streams == 2 and await second_was_first():
            break
    assert starts(master) == started, "each start reported once, in the order the containers started"
    after = await agent_metrics(running)
    if streams == 2:
        assert await second_was_first(), "the second subscription never delivered an event before the first"
    else:
        assert after.get("flareport_agent_docker_events_first_total{second}", 0) == before.get(
            "flareport_agent_docker_events_first_total{second}", 0
        )
    assert await running.stop() == 0
