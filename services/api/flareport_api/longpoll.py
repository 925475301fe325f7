"""Command long-polls without a Redis connection per waiting agent (docs/api.md, "How the long-poll scales").

Each agent's commands are a stream (``Keys.agent_commands``) read through the consumer group ``GROUP_AGENT``
with the agent id as consumer name, so Redis keeps, per agent, what was delivered and not yet acknowledged.

* Waiting costs no Redis connection: the process keeps ONE pub/sub subscription on
  ``Keys.command_notifications``; the reconciler PUBLISHes an agent id after XADDing to its stream, and the
  hub wakes that agent's waiters, which then do a short non-blocking XREADGROUP.
* Notifications are best-effort (pub/sub drops messages while disconnected): when the subscription breaks, and
  again once it is back, every waiter looks once; and a fallback timer checks every waiting agent's stream each
  ``command_poll_seconds`` (10 s; one pipelined XINFO GROUPS for all of them) and wakes those with undelivered
  entries: a notification lost otherwise costs at most one interval, never a command.
* A waiter registers *before* it reads, so a notification that lands between an empty read and the wait
  still wakes it.
* Redelivery: every poll first claims (XAUTOCLAIM) entries delivered more than ``command_redeliver_seconds``
  ago without an ack; after a (re-)register the next poll re-reads the agent's whole pending list (ID 0), so
  an agent that restarted gets again what it had fetched but not acknowledged. Creating the group, a lost group,
  delivery counts and dead letters follow the stream runtime's rules (``flareport_common.streams.groups``).
* Secrets: a command that carries a secret names it (``secret_ref``, see ``flareport_common.parcels``); it is
  read from the agent's own key only to build the answer, never written back to any stream. A command whose
  secret is gone (acknowledged through an earlier copy of the command, or expired) is acknowledged unseen.
* Concurrency: each agent may hold ``quotas.longpolls`` polls at once across all replicas, counted in a sorted
  set in Redis (``Keys.agent_longpolls``) whose members lapse by themselves (score: Redis time) a margin after
  their wait would end, so a crashed replica never keeps a slot. A poll whose client went away stops waiting
  (one sweep looks at all of them every ``_ALIVE_CHECK_S``) and frees its slot, so an agent reconnecting after a
  dropped connection finds room even at a limit of 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import ResponseError

from flareport_api.metrics import COMMANDS_DELIVERED, LONGPOLLS_OPEN, NOTIFICATIONS, NOTIFY_ERRORS
from flareport_api.scripts import AcquirePollSlot, Slot
from flareport_common.backoff import Backoff
from flareport_common.keys import GROUP_AGENT, Keys
from flareport_common.messages.base import new_id
from flareport_common.messages.commands import CommandMessage
from flareport_common.messages.deadletters import DeadLetter
from flareport_common.parcels import reveal, secret_ref
from flareport_common.protocol import CommandEnvelope
from flareport_common.replies import text
from flareport_common.streams import groups
from flareport_common.streams.codec import FIELD, display_fields, message_json

log = structlog.get_logger("flareport.api.longpoll")
BATCH = 20
_decoder = msgspec.json.Decoder(CommandMessage)
# How often waiting polls are looked at for a client that went away (aiohttp does not cancel the handler).
_ALIVE_CHECK_S = 5.0
# Waiting agents whose streams one fallback round trip looks at. The replies of one pipeline are parsed without a
# pause: 1,000 at once held this process's event loop for about 100 ms every ``command_poll_seconds``, and every
# command delivered meanwhile waited that long (the p99 of command delivery with 1,000 agents polling).
_FALLBACK_CHUNK = 50
# A slot lapses this long after its poll's wait would have ended (the reads and checks around the wait).
_SLOT_MARGIN_S = 30.0


class CommandHub:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, poll_s: float, redeliver_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._poll_s = poll_s
        self._redeliver_ms = int(redeliver_s * 1000)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # Waiting polls that can tell whether their client is still there, and those found gone.
        self._alive: dict[asyncio.Event, Callable[[], bool]] = {}
        self._gone: set[asyncio.Event] = set()
        self._groups: set[str] = set()
        self._closing = False
        self._pubsub: PubSub | None = None
        self._acquire = AcquirePollSlot(redis)

    # ---- background: notifications and the fallback timer ---------------------------------------------------

    async def listen(self) -> None:
        """Keep one subscription open for the life of the process, re-subscribing after Redis errors."""
        backoff = Backoff()
        while not self._closing:
            pubsub = self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._keys.command_notifications)
                if backoff.attempts:  # subscribed again: what was published while it was down is lost, look now
                    self.wake_all()
                backoff.reset()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        NOTIFICATIONS.inc()
                        self.wake(text(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                NOTIFY_ERRORS.inc()
                log.warning("longpoll.subscription_lost", error=str(exc) or type(exc).__name__)
                self.wake_all()  # anything published meanwhile was lost: let every waiter look once
                await asyncio.sleep(backoff.next())
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def stop_listening(self, task: asyncio.Task[None]) -> None:
        """End the listener. redis-py's blocking pub/sub read can swallow a task cancellation, so the
        subscription's connection is closed under it first; cancelling stays as the last resort."""
        self.close()
        for _ in range(20):  # again and again: a (re)subscribe in progress may open a new connection
            pubsub = self._pubsub
            if pubsub is not None and pubsub.connection is not None:
                with contextlib.suppress(Exception):
                    await pubsub.connection.disconnect(nowait=True)
            done, _ = await asyncio.wait([task], timeout=0.1)
            if done:
                return
        task.cancel()
        await asyncio.wait([task], timeout=2.0)

    async def fallback(self) -> None:
        next_look = time.monotonic() + self._poll_s
        while True:
            await asyncio.sleep(min(self._poll_s, _ALIVE_CHECK_S))
            self.sweep_gone()
            if time.monotonic() < next_look:
                continue
            next_look = time.monotonic() + self._poll_s
            try:
                await self._fallback_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: let everyone look for themselves once it is back
                log.warning("longpoll.fallback_failed", error=str(exc) or type(exc).__name__)
                self.wake_all()

    async def _fallback_once(self) -> None:
        """Wake only the waiters whose stream has undelivered entries: pipelined XINFO GROUPS round trips for the
        waiting agents, instead of one XREADGROUP each (1,000 reads at once would delay real deliveries)."""
        agents = list(self._waiters)
        for start in range(0, len(agents), _FALLBACK_CHUNK):
            await self._fallback_chunk(agents[start : start + _FALLBACK_CHUNK])

    async def _fallback_chunk(self, agents: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for agent_id in agents:
            pipe.xinfo_groups(self._keys.agent_commands(agent_id))
        replies = await pipe.execute(raise_on_error=False)
        for agent_id, infos in zip(agents, replies, strict=True):
            if isinstance(infos, Exception):
                self.wake(agent_id)
                continue
            group = next((g for g in infos if text(g.get("name")) == GROUP_AGENT), None)
            # lag is None when Redis cannot tell (entries deleted or trimmed): look rather than guess.
            if group is None or group.get("lag") is None or int(group["lag"]) > 0:
                self.wake(agent_id)

    def sweep_gone(self) -> None:
        """End the waits of polls whose client went away (aiohttp does not cancel their handlers), so they free
        their slots. One pass over the waiters from this task: a timer per poll would wake 1,000 polls at once
        every few seconds and hold up real deliveries."""
        for event, alive in list(self._alive.items()):
            if event not in self._gone and not alive():
                self._gone.add(event)
                event.set()

    def wake(self, agent_id: str) -> None:
        for event in self._waiters.get(agent_id, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    def close(self) -> None:
        """On shutdown: every open long-poll returns now (empty) instead of holding the process."""
        self._closing = True
        self.wake_all()

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    # ---- the long-poll -------------------------------------------------------------------------------------

    async def acquire(self, agent_id: str, wait_s: float, limit: int) -> tuple[str | None, float]:
        """Take one of the agent's ``limit`` poll slots: (slot id, 0), or (None, seconds until one lapses)."""
        slot = new_id()
        life_ms = math.ceil((wait_s + _SLOT_MARGIN_S) * 1000)
        answer, lapse_ms = await self._acquire(
            self._keys.agent_longpolls(agent_id), limit=limit, life_ms=life_ms, poll_id=slot
        )
        return (slot, 0.0) if answer is Slot.TAKEN else (None, lapse_ms / 1000)

    async def release(self, agent_id: str, slot: str) -> None:
        try:
            await self._redis.zrem(self._keys.agent_longpolls(agent_id), slot)
        except Exception as exc:  # the slot lapses by itself; the answer must not fail for this
            log.warning("longpoll.release_failed", error=str(exc) or type(exc).__name__)

    async def poll(
        self,
        agent_id: str,
        wait_s: float,
        *,
        from_start: bool = False,
        alive: Callable[[], bool] | None = None,
        valid: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[CommandEnvelope]:
        """Commands for the agent, waiting up to ``wait_s`` for one; ``alive`` says whether anyone still listens,
        ``valid`` whether the key that opened the poll still holds (asked when a wake-up found nothing: a key
        revoked or an agent removed wakes its polls, ``notify``, and they end now rather than at their deadline)."""
        event = asyncio.Event()
        self._waiters.setdefault(agent_id, set()).add(event)
        if alive is not None:
            self._alive[event] = alive
        LONGPOLLS_OPEN.inc()
        deadline = time.monotonic() + wait_s
        try:
            found = await self._read(agent_id, pending=from_start, claim=True)
            while not found and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    break
                if event in self._gone:
                    break  # the client went away (``sweep_gone``): read nothing for it, free its slot
                event.clear()
                found = await self._read(agent_id, pending=False, claim=False)
                if not found and valid is not None and not await valid():
                    break
            for envelope in found:
                COMMANDS_DELIVERED.labels(type(envelope.command).__name__).inc()
            return found
        finally:
            LONGPOLLS_OPEN.dec()
            self._alive.pop(event, None)
            self._gone.discard(event)
            waiters = self._waiters.get(agent_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[agent_id]

    async def ensure_group(self, agent_id: str) -> None:
        if agent_id in self._groups:
            return
        await groups.ensure_group(self._redis, self._keys.agent_commands(agent_id), GROUP_AGENT)
        self._groups.add(agent_id)

    async def _read(self, agent_id: str, *, pending: bool, claim: bool) -> list[CommandEnvelope]:
        try:
            return await self._read_once(agent_id, pending=pending, claim=claim)
        except ResponseError as exc:
            if not groups.stream_lost(exc):
                raise
            # The stream or group vanished (Redis lost its data): make them again and read once more.
            self._groups.discard(agent_id)
            return await self._read_once(agent_id, pending=pending, claim=claim)

    async def _read_once(self, agent_id: str, *, pending: bool, claim: bool) -> list[CommandEnvelope]:
        await self.ensure_group(agent_id)
        stream = self._keys.agent_commands(agent_id)
        again: list[Any] = []
        if pending or claim:
            # The reads of a poll's start in one round trip (in this order, as one after the other would run):
            # 1,000 agents' polls each paid three.
            pipe = self._redis.pipeline(transaction=False)
            if pending:
                pipe.xreadgroup(GROUP_AGENT, agent_id, {stream: "0"}, count=BATCH)
            if claim:
                pipe.xautoclaim(stream, GROUP_AGENT, agent_id, self._redeliver_ms, "0-0", count=BATCH)
            pipe.xreadgroup(GROUP_AGENT, agent_id, {stream: ">"}, count=BATCH)
            replies = await pipe.execute()
            if pending:
                again += groups.entries(replies[0])
            if claim:
                again += list(replies[-2][1])
            fresh = groups.entries(replies[-1])
        else:
            fresh = groups.entries(await self._redis.xreadgroup(GROUP_AGENT, agent_id, {stream: ">"}, count=BATCH))
        # Entries delivered to this agent earlier and not re-read now may lie between these ids: a batch of margin.
        ids = [text(entry_id) for entry_id, _ in again]
        counts = await groups.delivery_counts(self._redis, stream, GROUP_AGENT, agent_id, ids, others=BATCH)
        out: list[CommandEnvelope] = []
        seen: set[str] = set()
        for (entry_id, fields), deliveries in [*((e, None) for e in again), *((e, 1) for e in fresh)]:
            text_id = text(entry_id)
            if text_id in seen:
                continue
            seen.add(text_id)
            envelope = await self._envelope(agent_id, stream, text_id, fields, deliveries or counts.get(text_id, 1))
            if envelope is not None:
                out.append(envelope)
        return out

    async def _envelope(
        self, agent_id: str, stream: str, entry_id: str, fields: Any, deliveries: int
    ) -> CommandEnvelope | None:
        if fields is None:  # trimmed while pending: nothing left to deliver
            await self._redis.xack(stream, GROUP_AGENT, entry_id)
            return None
        raw = message_json(fields)
        try:
            if raw is None:
                raise msgspec.DecodeError(f"entry has no {FIELD.decode()!r} field")
            command = _decoder.decode(raw)
        except msgspec.DecodeError as exc:
            await self._dead_letter(stream, entry_id, fields, str(exc), deliveries)
            return None
        ref = secret_ref(command)
        if ref is not None:
            secret = await self._redis.get(self._keys.agent_secret(agent_id, ref))
            if secret is None:
                # Acknowledged through an earlier copy of this command (the secret is deleted at the ack), or
                # left unacknowledged past its TTL: there is nothing to hand out.
                log.warning(
                    "longpoll.secret_gone", agent_id=agent_id, entry_id=entry_id, command=type(command).__name__
                )
                await self._redis.xack(stream, GROUP_AGENT, entry_id)
                return None
            command = reveal(command, text(secret))
        return CommandEnvelope(command_id=entry_id, command=command, deliveries=deliveries)

    async def _dead_letter(self, stream: str, entry_id: str, fields: Any, error: str, deliveries: int) -> None:
        """An agent could never run a command it cannot decode: keep it for the operator, do not hand it out."""
        letter = DeadLetter(
            source_stream=stream,
            source_id=entry_id,
            group=GROUP_AGENT,
            consumer="api",
            reason="undecodable",
            error=error,
            deliveries=deliveries,
            payload=display_fields(fields),
        )
        pipe = self._redis.pipeline(transaction=True)
        groups.queue_dead_letter(pipe, self._keys.dead_letters, letter)
        await pipe.execute()
        log.error("longpoll.undecodable_command", stream=stream, entry_id=entry_id, error=error)


async def notify(redis: aioredis.Redis, keys: Keys, agent_id: str) -> None:
    """Wake the agent's waiting polls in every API process (the channel the reconciler announces commands on):
    after its key was revoked or it was removed, they look again and end."""
    await redis.publish(keys.command_notifications, agent_id)
