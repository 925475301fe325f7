"""Group commit of one agent's inventory events: the events that arrive together are applied together.

An agent's burst (containers started together, a compose project coming up) reaches the events stream as many
messages. Applying each alone costs its own transaction and hostname refresh; applying them as one batch costs
one of each. The consumer hands messages to handlers concurrently; here, the handlers of one agent queue their
event and the first one to get the agent's lock applies every queued event (its own and those queued while the
previous batch ran) in one go. The others find their event done when they get the lock and return, so each
message is still acknowledged only after its event was applied: a crash leaves all of the batch pending.

A batch that fails fails every handler in it; the stream runtime retries each message (as a batch again, or
alone). One agent has at most one batch in flight per replica, so its events never make each other's
transactions retry; across replicas the inventory merge is order-independent anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from flareport_reconciler.inventory import InventoryEvent

Apply = Callable[[str, Sequence[InventoryEvent]], Awaitable[None]]

# An upper bound keeps one transaction (and its refresh) of reasonable size; more waits for the next batch.
MAX_BATCH = 200
# Batches applied at once in a replica (each holds a Redis connection): the rest queue up, making batches larger.
MAX_RUNNING = 24


@dataclass
class _Agent:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queue: list[tuple[InventoryEvent, asyncio.Future[None]]] = field(default_factory=list)
    users: int = 0


class AgentBatches:
    def __init__(self, apply: Apply) -> None:
        self._apply = apply
        self._agents: dict[str, _Agent] = {}
        self._running = asyncio.Semaphore(MAX_RUNNING)

    async def submit(self, agent_id: str, event: InventoryEvent) -> None:
        """Return once ``event`` was applied (alone or with others of the same agent); raise if that failed."""
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        agent.queue.append((event, done))
        agent.users += 1
        try:
            async with agent.lock:
                while not done.done():  # more than MAX_BATCH queued before it: take the next batch
                    await self._run_batch(agent_id, agent)
        finally:
            agent.users -= 1
            if agent.users == 0:
                del self._agents[agent_id]
        done.result()  # raises what the batch raised

    async def _run_batch(self, agent_id: str, agent: _Agent) -> None:
        async with self._running:
            # One turn of the loop first: the handlers of the other messages of the same stream read are already
            # scheduled and queue their events without waiting, so an agent's burst posted at once becomes one
            # batch (one job per target) instead of a first batch of one event and then the rest.
            await asyncio.sleep(0)
            # Taken only now: what was queued while waiting for a free slot joins this batch.
            batch, agent.queue = agent.queue[:MAX_BATCH], agent.queue[MAX_BATCH:]
            try:
                await self._apply(agent_id, [event for event, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    future.set_exception(exc)
                return
        for _, future in batch:
            future.set_result(None)
