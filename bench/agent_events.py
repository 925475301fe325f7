"""Agent throughput: events per second from a Docker event to the batch the master accepted.

Two measurements, both against the master test double over loopback HTTP:

1. ``engine``: a real Podman engine (started here, like the tests do) and a running agent; N labelled containers
   are started concurrently. For each container start the latency is the master's receive time minus the engine's
   event time (``timeNano``); throughput is N over the span from the first event to the last batch. On a small
   machine this is bounded by how fast the engine starts containers, not by the agent.
   ``engine_delivery_p50_ms`` is the delay of a plain event-stream client, for comparison: the part of the latency
   that is the engine's (Podman's file events logger), not the agent's.
2. ``pipeline``: the agent's own path without an engine — raw Docker event dicts are parsed by the tracker, buffered,
   numbered and sent in batches — which shows how much headroom the agent has over the engine.

Usage: python bench/agent_events.py [--containers 100] [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
from prometheus_client import REGISTRY

from flareport_agent.agent import Agent, Tuning
from flareport_agent.client import MasterClient
from flareport_agent.link import MasterLink
from flareport_agent.outbox import Outbox, send_loop
from flareport_agent.tracker import Tracker
from flareport_cli.localpodman import BUSYBOX_IMAGE, LocalPodman
from flareport_common.logs import setup_logging
from flareport_common.messages.events import ContainerStart
from flareport_common.protocol import RegisterRequest
from flareport_common.settings import AgentSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fptest.agent_master_double import MasterDouble

KEY = "bench-agent-key-0123456789"


def labels(i: int) -> dict[str, str]:
    return {"dockflare.enable": "true", "dockflare.hostname": f"b{i}.example.com", "dockflare.service": "http://b:80"}


async def engine(workdir: Path, count: int) -> dict[str, float]:
    podman = LocalPodman(workdir / "podman")
    await asyncio.to_thread(podman.start)
    master = MasterDouble(keys={KEY})
    await master.start()
    settings = AgentSettings(
        master_url=master.url, api_key=KEY, docker_host=podman.docker_host, cloudflared_image=BUSYBOX_IMAGE,
        data_dir=str(workdir / "agent"), label_prefix=None, log_level="warning", log_format="console", tz=None,
        health_port=0,
    )  # fmt: skip
    client = docker.DockerClient(base_url=podman.docker_host)
    made: list[Any] = []
    try:
        await asyncio.to_thread(podman.build_busybox_image)
        agent = Agent(settings, Tuning(linger_seconds=0.005, health_host="127.0.0.1"))
        task = asyncio.create_task(agent.run())
        while not master.events:  # noqa: ASYNC110 (the double offers no event to wait on; a bench may poll)
            await asyncio.sleep(0.05)
        event_times: dict[str, float] = {}  # the engine's time of each start event
        seen_at: dict[str, float] = {}  # when a plain event-stream client got it (the engine's own delivery delay)

        stream = client.events(decode=True, filters={"type": "container"}, since=int(time.time()))

        def watch() -> None:
            with contextlib.suppress(Exception):  # ends when the stream is closed below
                for raw in stream:
                    if raw.get("Action") == "start":
                        event_times[raw["id"]] = raw["timeNano"] / 1e9
                        seen_at[raw["id"]] = time.time()

        watcher = asyncio.create_task(asyncio.to_thread(watch))

        def run(i: int) -> Any:
            return client.containers.run(BUSYBOX_IMAGE, detach=True, labels=labels(i), network_mode="none")

        with ThreadPoolExecutor(4) as pool:
            made = await asyncio.to_thread(lambda: list(pool.map(run, range(count))))
        ids = {c.id for c in made}
        deadline = time.monotonic() + 120
        received: dict[str, float] = {}
        while (len(received) < count or not ids <= event_times.keys()) and time.monotonic() < deadline:
            for event, at in zip(master.events, master.received_at, strict=True):
                if isinstance(event, ContainerStart) and event.container.container_id in ids:
                    received.setdefault(event.container.container_id, at)
            await asyncio.sleep(0.05)
        stream.close()
        await asyncio.wait_for(watcher, 30)
        agent.stop()
        await task
        latencies = [received[c] - event_times[c] for c in received if c in event_times]
        delivery = [seen_at[c] - event_times[c] for c in ids if c in seen_at]
        span = max(received.values()) - min(event_times.values())
        return {
            "containers": float(len(received)),
            "events_per_s": round(len(received) / span, 1),
            "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "latency_p95_ms": round(statistics.quantiles(latencies, n=20)[-1] * 1000, 1),
            "latency_max_ms": round(max(latencies) * 1000, 1),
            "engine_delivery_p50_ms": round(statistics.median(delivery) * 1000, 1),
            # The agent's own hops of each event's trace (flareport_common.tracing), from its histograms.
            "engine_to_agent_mean_ms": _hop_mean_ms("engine_to_agent"),
            "agent_outbox_mean_ms": _hop_mean_ms("agent_outbox"),
        }
    finally:
        with ThreadPoolExecutor(8) as pool:
            await asyncio.to_thread(lambda: list(pool.map(lambda c: c.remove(force=True), made)))
        client.close()
        await master.stop()
        await asyncio.to_thread(podman.stop)


def _hop_mean_ms(hop: str) -> float:
    """Mean milliseconds of one hop this process observed (the agent ran in it); -1 when it observed none."""
    total = REGISTRY.get_sample_value("flareport_trace_hop_seconds_sum", {"hop": hop}) or 0.0
    count = REGISTRY.get_sample_value("flareport_trace_hop_seconds_count", {"hop": hop}) or 0.0
    return round(total / count * 1000, 1) if count else -1.0


async def pipeline(count: int) -> dict[str, float]:
    master = MasterDouble(keys={KEY})
    await master.start()
    link = MasterLink(MasterClient(master.url, KEY), lambda: RegisterRequest(display_name="bench"))
    await link.connect()
    tracker = Tracker()
    outbox = Outbox(capacity=count + 10, last_seq=0, snapshot=tracker.inventory)
    raws = [
        {"Action": "start", "Actor": {"ID": f"{i:064x}", "Attributes": {"name": f"c{i}", **labels(i)}}}
        for i in range(count)
    ]
    sender = asyncio.create_task(send_loop(outbox, link, max_batch=200, linger=0, on_accepted=lambda _: None))
    started = time.perf_counter()
    for i, raw in enumerate(raws):
        event = tracker.event(raw)
        if event is not None:
            outbox.put(event)
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the sender run, as the agent's event loop would
    while len(master.events) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    sender.cancel()
    await link.close()
    await master.stop()
    return {
        "events": float(count),
        "events_per_s": round(count / elapsed, 1),
        "batches": float(len(master.batches)),
        "mean_batch": round(statistics.mean(master.batches), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    setup_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="fp-bench-agent-") as tmp:
        result = {
            "engine": asyncio.run(engine(Path(tmp), args.containers)),
            "pipeline": asyncio.run(pipeline(args.events)),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
