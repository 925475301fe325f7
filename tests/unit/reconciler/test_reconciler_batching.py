"""Group commit of an agent's events: what arrives together is applied together, and failures reach every sender."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flareport_common.messages import ContainerStop
from flareport_reconciler.batching import AgentBatches
from flareport_reconciler.inventory import InventoryEvent


def stop(agent: str, seq: int) -> ContainerStop:
    return ContainerStop(agent_id=agent, seq=seq, container_id=f"c{seq}")


class Recorder:
    """Records batches; the first batch of agent "a" blocks until released, so more events queue meanwhile."""

    def __init__(self, fail_batch: int | None = None) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_batch = fail_batch

    async def apply(self, agent_id: str, events: Sequence[InventoryEvent]) -> None:
        self.batches.append((agent_id, [e.seq for e in events]))
        if len(self.batches) == 1:
            self.started.set()
            await self.release.wait()
        if len(self.batches) == self.fail_batch:
            raise RuntimeError("redis went away")


async def test_events_queued_while_a_batch_runs_are_applied_together_and_agents_do_not_wait_for_each_other() -> None:
    recorder = Recorder()
    group = AgentBatches(recorder.apply)
    first = asyncio.create_task(group.submit("a", stop("a", 1)))
    await recorder.started.wait()
    rest = [asyncio.create_task(group.submit("a", stop("a", n))) for n in (2, 3, 4)]
    await group.submit("b", stop("b", 1))  # another agent is not held up by "a"
    recorder.release.set()
    await asyncio.gather(first, *rest)
    assert recorder.batches == [("a", [1]), ("b", [1]), ("a", [2, 3, 4])]


async def test_a_failed_batch_fails_every_event_in_it_and_later_events_are_applied() -> None:
    recorder = Recorder(fail_batch=2)
    group = AgentBatches(recorder.apply)
    first = asyncio.create_task(group.submit("a", stop("a", 1)))
    await recorder.started.wait()
    failing = [asyncio.create_task(group.submit("a", stop("a", n))) for n in (2, 3)]
    recorder.release.set()
    await first
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    await group.submit("a", stop("a", 4))
    assert recorder.batches == [("a", [1]), ("a", [2, 3]), ("a", [4])]
