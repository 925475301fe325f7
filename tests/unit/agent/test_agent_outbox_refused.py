"""A batch the master refuses is never retried as is and never costs the events around the refused one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from flareport_agent.client import RequestRejected
from flareport_agent.outbox import Outbox, send_loop
from flareport_common.messages.events import ContainerStop, Inventory
from flareport_common.protocol import AgentEvent, EventBatchResponse
from fptest.agent_link import ScriptedClient, scripted_link
from fptest.waiting import wait_for


def stop(cid: str) -> ContainerStop:
    return ContainerStop(agent_id="", seq=0, container_id=cid)


def snapshot() -> Inventory:
    return Inventory(agent_id="", seq=0)


def name(event: AgentEvent) -> str:
    return event.container_id if isinstance(event, ContainerStop) else type(event).__name__


Judge = Callable[[tuple[AgentEvent, ...]], RequestRejected | None]


async def run(outbox: Outbox, judge: Judge, *, until: Callable[[list[list[str]]], bool]) -> list[list[str]]:
    """Send with a master that refuses what ``judge`` says; returns every batch the master saw, by name."""
    seen: list[list[str]] = []

    async def send(batch: tuple[AgentEvent, ...]) -> EventBatchResponse:
        seen.append([name(e) for e in batch])
        refusal = judge(batch)
        if refusal is not None:
            raise refusal
        return EventBatchResponse(accepted=len(batch))

    client = ScriptedClient(send)
    link = scripted_link(client)
    await link.connect()
    task = asyncio.create_task(send_loop(outbox, link, max_batch=10, linger=0, on_accepted=lambda _: None))

    async def done() -> bool:
        return len(outbox) == 0 and until(seen)

    await wait_for(done, what="the outbox drained")
    task.cancel()
    await link.close()
    assert "register" not in client.calls[1:], "a refused batch is not a rejected key"
    return seen


def refuse_b(batch: tuple[AgentEvent, ...]) -> RequestRejected | None:
    names = [name(e) for e in batch]
    if "b" not in names:
        return None
    field = f"events[{names.index('b')}].container_id"
    return RequestRejected("HTTP 422 invalid_body", status=422, code="invalid_body", field=field)


async def test_only_the_named_event_is_dropped_and_a_snapshot_follows() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=snapshot)
    for cid in "abc":
        outbox.put(stop(cid))
    seen = await run(outbox, refuse_b, until=lambda seen: ["c", "Inventory"] in seen)
    assert seen == [["a", "b", "c"], ["a"], ["b", "c"], ["c", "Inventory"]]


async def test_a_refusal_naming_no_event_is_narrowed_one_event_at_a_time() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=snapshot)
    for cid in "abc":
        outbox.put(stop(cid))

    def judge(batch: tuple[AgentEvent, ...]) -> RequestRejected | None:
        refusal = refuse_b(batch)
        return None if refusal is None else RequestRejected("HTTP 400", status=400, code="malformed_json", field="$")

    seen = await run(outbox, judge, until=lambda seen: ["c", "Inventory"] in seen)
    assert seen == [["a", "b", "c"], ["a"], ["b", "c"], ["b"], ["c", "Inventory"]]


async def test_a_refused_snapshot_is_dropped_without_another_one() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=snapshot)
    outbox.put_snapshot()

    def judge(batch: tuple[AgentEvent, ...]) -> RequestRejected | None:
        if isinstance(batch[0], Inventory):
            return RequestRejected("HTTP 413 quota_exceeded", status=413, code="quota_exceeded", field="containers")
        return None

    seen = await run(outbox, judge, until=lambda seen: bool(seen))
    outbox.put(stop("later"))
    seen = await run(outbox, judge, until=lambda seen: bool(seen))
    assert seen == [["later"]], "the refused snapshot was not repeated"


async def test_a_body_too_large_halves_the_batch() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=snapshot)
    for cid in "abcd":
        outbox.put(stop(cid))

    def judge(batch: tuple[AgentEvent, ...]) -> RequestRejected | None:
        return RequestRejected("HTTP 413", status=413, code="body_too_large") if len(batch) > 2 else None

    seen = await run(outbox, judge, until=lambda seen: sum(len(b) for b in seen if len(b) <= 2) == 4)
    assert seen == [["a", "b", "c", "d"], ["a", "b"], ["c", "d"]]


async def test_a_batch_over_a_size_quota_is_halved_and_nothing_is_dropped() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=snapshot)
    for cid in "abcdefgh":
        outbox.put(stop(cid))

    def judge(batch: tuple[AgentEvent, ...]) -> RequestRejected | None:
        # Like distinct hostnames in one batch: each event alone is fine, more than three together are not.
        too_many = RequestRejected("HTTP 413 quota_exceeded", status=413, code="quota_exceeded", field="hostnames")
        return too_many if len(batch) > 3 else None

    seen = await run(outbox, judge, until=lambda seen: sum(len(b) for b in seen if len(b) <= 3) == 8)
    delivered = [cid for b in seen if len(b) <= 3 for cid in b]
    assert delivered == list("abcdefgh"), "every event delivered once, in order"
