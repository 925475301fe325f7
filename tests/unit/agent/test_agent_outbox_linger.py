"""The sender's linger: a lone event goes at once, a burst still gathers into batches (and each batch's hop, for
its oldest event, is observed in the agent's ``flareport_trace_hop_seconds{hop="agent_outbox"}``)."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from flareport_agent.outbox import Outbox, send_loop
from flareport_common.messages.events import ContainerStop, Inventory
from flareport_common.messages.trace import Trace
from flareport_common.protocol import AgentEvent, EventBatchResponse
from flareport_common.tracing import now_us
from fptest.agent_link import ScriptedClient, scripted_link
from fptest.waiting import wait_for

LINGER = 30.0  # far longer than the test may take: any wait for it would fail the test


def stop(cid: str) -> ContainerStop:
    return ContainerStop(agent_id="", seq=0, container_id=cid, trace=Trace(agent_us=now_us()))


def outbox_hops() -> float:
    return REGISTRY.get_sample_value("flareport_trace_hop_seconds_count", {"hop": "agent_outbox"}) or 0.0


async def test_a_lone_event_is_sent_at_once_and_a_burst_behind_it_in_one_batch() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=lambda: Inventory(agent_id="", seq=0))
    sent: list[tuple[AgentEvent, ...]] = []
    release = asyncio.Event()

    async def send(batch: tuple[AgentEvent, ...]) -> EventBatchResponse:
        sent.append(batch)
        if len(sent) == 1:
            await release.wait()  # the first request is in flight while the burst arrives
        return EventBatchResponse(accepted=len(batch), last_seq=0)

    link = scripted_link(ScriptedClient(send))
    await link.connect()
    hops = outbox_hops()
    task = asyncio.create_task(send_loop(outbox, link, max_batch=50, linger=0.05, on_accepted=lambda _: None))
    try:
        outbox.put(stop("lone"))

        async def first_sent() -> bool:
            return len(sent) == 1

        await wait_for(first_sent, what="the lone event sent")
        for cid in "abcde":
            outbox.put(stop(cid))
        release.set()

        async def all_sent() -> bool:
            return len(outbox) == 0

        await wait_for(all_sent, what="the burst sent")
        assert [len(b) for b in sent] == [1, 5], "the events that arrived meanwhile went as one batch"
        assert outbox_hops() - hops == 2, "each accepted batch's outbox hop was observed once"
    finally:
        task.cancel()
        await link.close()


async def test_a_lone_event_does_not_wait_for_a_long_linger() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=lambda: Inventory(agent_id="", seq=0))
    sent: list[tuple[AgentEvent, ...]] = []

    async def send(batch: tuple[AgentEvent, ...]) -> EventBatchResponse:
        sent.append(batch)
        return EventBatchResponse(accepted=len(batch), last_seq=0)

    link = scripted_link(ScriptedClient(send))
    await link.connect()
    task = asyncio.create_task(send_loop(outbox, link, max_batch=50, linger=LINGER, on_accepted=lambda _: None))
    try:
        outbox.put(stop("a"))

        async def sent_once() -> bool:
            return len(sent) == 1

        await wait_for(sent_once, timeout=LINGER / 10, what="a lone event sent without waiting for the linger")
    finally:
        task.cancel()
        await link.close()


async def test_each_batch_says_how_many_containers_are_still_to_start_when_it_goes() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=lambda: Inventory(agent_id="", seq=0))
    sent: list[tuple[AgentEvent, ...]] = []
    to_start = [2]

    async def send(batch: tuple[AgentEvent, ...]) -> EventBatchResponse:
        sent.append(batch)
        return EventBatchResponse(accepted=len(batch), last_seq=0)

    client = ScriptedClient(send)
    link = scripted_link(client)
    await link.connect()
    loop = send_loop(outbox, link, max_batch=50, linger=0, on_accepted=lambda _: None, starting=lambda: to_start[0])
    task = asyncio.create_task(loop)
    try:
        for remaining in (1, 0):
            outbox.put(stop(f"c{remaining}"))
            count = len(sent) + 1

            async def gone(count: int = count) -> bool:
                return len(sent) == count

            await wait_for(gone, what="the batch sent")
            to_start[0] = remaining
        assert client.starting == [2, 1], "read when each batch went, not when its events were buffered"
    finally:
        task.cancel()
        await link.close()
