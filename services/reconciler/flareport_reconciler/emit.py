"""What the reconciler sends to the other services: jobs outside coalescing (tunnels, verification) to the
dns-worker's cf-jobs streams, and commands to an agent's command stream. Store: Redis.

A target's sync job is not sent from here: ``coalesce`` XADDs it in the same script that records it in flight.
Every command is XADDed to the agent's stream and its id PUBLISHed on the notifications channel, which wakes the
API's long-poll for that agent.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter

from flareport_common.keys import Keys
from flareport_common.messages import CommandMessage, DeleteTunnel, EnsureTunnel, VerifyTarget
from flareport_common.messages.cfjobs import RefreshTunnels
from flareport_common.parcels import stash
from flareport_common.streams import Producer
from flareport_common.streams.codec import encode
from flareport_reconciler.targets import Target

log = structlog.get_logger("flareport.reconciler")

COMMANDS = Counter("flareport_reconciler_commands_total", "Commands sent to agents, by type.", ["type"])
COMMAND_STREAM_MAXLEN = 1_000


class Emitter:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._producer = Producer(redis, metrics_label="cf-jobs")

    async def job(self, job: EnsureTunnel | DeleteTunnel | RefreshTunnels) -> None:
        await self._producer.send(self._keys.cf_jobs, job)

    async def verify(self, targets: Iterable[Target]) -> None:
        by_stream: dict[str, list[VerifyTarget]] = {}
        for target in targets:
            name = str(target)
            by_stream.setdefault(self._keys.cf_jobs_for(name), []).append(VerifyTarget(target=name))
        for stream, jobs in by_stream.items():
            await self._producer.send_many(stream, jobs)

    async def secret_ref(self, agent_id: str, ref: str | None, legacy: str | None) -> str:
        """Where the agent's secret waits (``flareport_common.parcels``). A message from a producer of an older
        release carries the secret itself: it is moved out of the stream into the agent's own key here."""
        return ref or await stash(self._redis, self._keys, agent_id, legacy or "")

    async def command(self, agent_id: str, command: CommandMessage) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(
            self._keys.agent_commands(agent_id),
            encode(command),  # type: ignore[arg-type]
            maxlen=COMMAND_STREAM_MAXLEN,
            approximate=True,
        )
        pipe.publish(self._keys.command_notifications, agent_id)
        await pipe.execute()
        COMMANDS.labels(type(command).__name__).inc()
        log.info("reconciler.command_sent", agent_id=agent_id, command=type(command).__name__)
