"""One reconciler replica: three consumer groups (events, intents, cf-results) and the background loop.

The three streams are read by one loop (``ConsumerSet``): one reclaim round trip and one XREADGROUP over the three
per claim interval when idle, instead of three of each.

Events are handled with a high concurrency and one agent's inventory events are applied in batches
(``batching``: at most one batch per agent in flight in a replica, so one agent's burst does not fight itself
over the agent's inventory and costs one transaction per batch, not per event); across replicas the inventory's
optimistic transaction and the sequence-number merge make the order irrelevant.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from flareport_common.keys import GROUP_RECONCILER, Keys
from flareport_common.messages import CfResultMessage, EventMessage, IntentMessage
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import ConsumerConfig, ConsumerSet, StreamConsumer
from flareport_reconciler.agents import PolicyDefaults, configure_policy
from flareport_reconciler.background import Background
from flareport_reconciler.failover import CHECK_INTERVAL_SECONDS, SHARED_WAKE_MARGIN_S
from flareport_reconciler.handlers import Reconciler

# Handlers waiting on their agent's batch are cheap; many in flight make an agent's burst a few large batches.
EVENTS_CONCURRENCY = 256
# Intents and results spend most of their time waiting on Redis round trips (an enrolment: the agent's record, its
# tunnel job, then its hostnames converged); with a few in flight, a fleet enrolled at once queued behind them
# while the process sat mostly idle (1,000 enrolments took over a minute at 8).
INTENTS_CONCURRENCY = 64
RESULTS_CONCURRENCY = 64


class Replica:
    def __init__(self, redis: aioredis.Redis, settings: ReconcilerSettings, consumer: str) -> None:
        self.keys = Keys(settings.common.key_prefix)
        configure_policy(PolicyDefaults.of(settings))  # the global publishing policy every agent view starts from
        self.reconciler = Reconciler(redis, self.keys, settings)
        self.background = Background(self.reconciler.spine)
        idle_ms = int(settings.claim_idle_seconds * 1000)

        def config(stream: str, label: str, concurrency: int) -> ConsumerConfig:
            return ConsumerConfig(
                stream=stream,
                group=GROUP_RECONCILER,
                consumer=consumer,
                dead_letter_stream=self.keys.dead_letters,
                concurrency=concurrency,
                count=min(concurrency, 100),
                claim_idle_ms=idle_ms,
                claim_interval_s=max(min(idle_ms / 2000, 5.0), 0.1),
                # A little more often than the Redis history check falls due: that check runs in these wake-ups
                # instead of waking the replica on a timer of its own (failover.Watch).
                claim_interval_max_s=min(idle_ms / 3000, CHECK_INTERVAL_SECONDS - SHARED_WAKE_MARGIN_S),
                metrics_label=label,
            )

        r = self.reconciler
        self.events: StreamConsumer[EventMessage] = StreamConsumer(
            redis, config(self.keys.events, "events", EVENTS_CONCURRENCY), EventMessage, r.on_event
        )
        self.intents: StreamConsumer[IntentMessage] = StreamConsumer(
            redis, config(self.keys.intents, "intents", INTENTS_CONCURRENCY), IntentMessage, r.on_intent
        )
        self.results: StreamConsumer[CfResultMessage] = StreamConsumer(
            redis, config(self.keys.cf_results, "cf-results", RESULTS_CONCURRENCY), CfResultMessage, r.on_result
        )
        self.reading = ConsumerSet(self.consumers)
        # An idle background pass runs in the reading's wake-ups instead of on a timer of its own.
        self.reading.share_wakes(self.background.awake)

    @property
    def consumers(
        self,
    ) -> tuple[StreamConsumer[EventMessage], StreamConsumer[IntentMessage], StreamConsumer[CfResultMessage]]:
        return (self.events, self.intents, self.results)

    async def ensure_groups(self) -> None:
        for consumer in self.consumers:
            await consumer.ensure_group()

    async def run(self) -> None:
        await self.ensure_groups()
        await asyncio.gather(self.reading.run(), self.background.run())
        # Plans held for a coalescing window are made now rather than left for another replica's sweeper.
        await self.reconciler.spine.flush()

    def stop(self) -> None:
        self.reading.stop()
        self.background.stop()
