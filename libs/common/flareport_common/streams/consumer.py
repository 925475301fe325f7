"""The consumer-group loop every service uses to consume a stream, at least once.

Why it looks the way it does:

* A message is acknowledged (XACK) only after its handler returned, so a crash anywhere leaves it pending.
  Pending messages idle for longer than ``claim_idle_ms`` are taken over by any live consumer (XAUTOCLAIM,
  carrying the returned cursor so a long pending list is walked, not rescanned from the start each time).
* While a handler runs, the runtime keeps its message "fresh" (XCLAIM ... JUSTID every third of the idle
  timeout) so a slow handler is never mistaken for a dead one and run twice at once.
* A handler retry re-claims the message (XCLAIM without JUSTID), which increments Redis' delivery counter;
  that counter is the single source of truth for the delivery cap, across restarts and replicas.
* Messages that cannot be decoded, that fail permanently, or that reach the delivery cap go to the
  dead-letter stream with their original fields, the error, the source stream/id and the delivery count, and
  are acknowledged in the same transaction: nothing is lost and nothing is retried forever.
* Losing Redis is survived: the loop logs, backs off, and carries on when Redis is back; if the group vanished
  (Redis restarted without its data) it is created again.
* ``stop()`` (wired to SIGTERM/SIGINT by ``flareport_common.runtime``) stops reading, waits up to
  ``grace_seconds`` for in-flight handlers, then cancels the rest; what was cancelled stays pending for another
  replica.
* ``run_burst()`` drains the stream (own pending, reclaimable, new) and returns: deterministic tests.
* Producers add without ``MAXLEN``; at most every ``trim_interval_s``, and only once this consumer finished a
  message since the last trim, it trims the stream below the oldest entry any group still needs
  (``streams.trim``), so an entry is never removed before every group handled it.
* Idle costs nothing: the read blocks until the next reclaim is due (at most ``block_ms``; its connection's read
  timeout is stretched by the block, or a read that outlived it would be dropped as a timeout and its connection
  made again), ``stop()`` interrupts it at once, and the keep-alive timer runs only while handlers do. A reclaim
  that walked the whole pending list and found nothing doubles the wait to the next one, up to
  ``claim_interval_max_s``; a reclaim that found something brings it back to ``claim_interval_s`` (new entries
  read do not). So an idle consumer makes one XAUTOCLAIM and one XREADGROUP per ``claim_interval_max_s`` (by
  default a third of ``claim_idle_ms``: 10 s of 30 s), and a dead consumer's message is taken over at most
  ``claim_idle_ms + claim_interval_max_s`` after it was delivered or last kept fresh (40 s of 30 s).
* The read loop itself is ``streams.consumerset``: several consumers of one group (the reconciler's three streams)
  share one loop, one reclaim round trip and one XREADGROUP, so an idle process wakes as often as with one stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from flareport_common.backoff import Backoff
from flareport_common.errors import PermanentError, TemporaryError
from flareport_common.messages.deadletters import DeadLetter, DeadLetterReason
from flareport_common.metrics import (
    STREAM_DEAD_LETTERS,
    STREAM_HANDLER_SECONDS,
    STREAM_INFLIGHT,
    STREAM_MESSAGES,
    STREAM_RECLAIMED,
    STREAM_REDIS_ERRORS,
    STREAM_RETRIES,
)
from flareport_common.replies import text
from flareport_common.streams import groups
from flareport_common.streams.codec import FIELD, display_fields, message_json
from flareport_common.streams.consumerset import REDIS_TRANSIENT, ConsumerSet
from flareport_common.streams.trim import StreamTrimmer

M = TypeVar("M")
log = structlog.get_logger("flareport.streams")


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    stream: str
    group: str
    consumer: str
    dead_letter_stream: str
    count: int = 100
    # The longest a read blocks; it blocks less when the next reclaim is due sooner. ``stop()`` interrupts it.
    block_ms: int = 60_000
    concurrency: int = 32
    claim_idle_ms: int = 30_000
    claim_interval_s: float = 5.0
    # While reclaims find nothing, the interval doubles up to this (None: a third of ``claim_idle_ms``; never less
    # than ``claim_interval_s``). It bounds how long after ``claim_idle_ms`` a dead consumer's message waits.
    claim_interval_max_s: float | None = None
    max_deliveries: int = 5
    grace_seconds: float = 10.0
    # Upper bound on a handler-requested retry delay; kept below the idle timeout so a message being
    # retried here is never reclaimed elsewhere meanwhile.
    max_retry_delay: float = 10.0
    # Short name for metrics labels (e.g. "events"); defaults to the stream name.
    metrics_label: str | None = None
    # How often the stream is trimmed below what every group handled (0: never, e.g. another process trims).
    trim_interval_s: float = 1.0

    @property
    def longest_claim_interval_s(self) -> float:
        most = self.claim_idle_ms / 3000 if self.claim_interval_max_s is None else self.claim_interval_max_s
        return max(self.claim_interval_s, most)


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message came from; handlers use it for logging and idempotency keys."""

    stream: str
    message_id: str
    deliveries: int


Handler = Callable[[M, Delivery], Awaitable[None]]


class _KeySlot:
    """Serialises handlers of one key (e.g. one agent); dropped when its last user is done."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class StreamConsumer(Generic[M]):
    def __init__(
        self,
        redis: aioredis.Redis,
        config: ConsumerConfig,
        message_type: Any,
        handler: Handler[M],
        *,
        key: Callable[[M], str] | None = None,
    ) -> None:
        self._redis = redis
        self.config = config
        self._decoder: msgspec.json.Decoder[M] = msgspec.json.Decoder(message_type)
        self._handler = handler
        self._key = key
        self._key_locks: dict[str, _KeySlot] = {}
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._stopping = asyncio.Event()
        self._claim_cursor = "0-0"
        self._labels = (config.metrics_label or config.stream, config.group)
        self.processed = 0
        self._ack_batch: list[str] = []
        self._ack_done: asyncio.Future[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._busy = asyncio.Event()  # set while handlers run: the keep-alive timer sleeps otherwise
        self._idle = asyncio.Event()  # set while none runs: ends the keep-alive's wait early (see there)
        self._idle.set()
        self._m_acked = STREAM_MESSAGES.labels(*self._labels, "acked")
        self._m_inflight = STREAM_INFLIGHT.labels(*self._labels)
        self._m_seconds = STREAM_HANDLER_SECONDS.labels(*self._labels)
        self._log = log.bind(stream=config.metrics_label or config.stream, group=config.group)
        self._trimmer = StreamTrimmer(redis, config.stream)
        self._next_trim = 0.0
        self._trimmed_at = -1  # ``processed`` at the last trim: nothing finished since, nothing new to trim

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; ``run()`` returns once in-flight handlers finished or the grace period ran out."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Consume until ``stop()``: the read loop of a set of one (``streams.consumerset``)."""
        await ConsumerSet((self,)).run()

    async def run_burst(self, *, claim_idle_ms: int | None = None) -> int:
        """Handle everything available now (own pending, reclaimable, new) and return how many were finished."""
        before = self.processed
        await self.ensure_group()
        await self._consume_own_pending()
        await self._wait_all()
        self._claim_cursor = "0-0"
        while True:
            claimed = await self._reclaim_once(self.config.claim_idle_ms if claim_idle_ms is None else claim_idle_ms)
            await self._wait_all()
            if self._claim_cursor == "0-0" and claimed == 0:
                break
        while await self._read_new() > 0:
            pass
        await self._wait_all()
        if self.config.trim_interval_s:
            await self._trimmer.trim()
        return self.processed - before

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; only "already exists" is ignored."""
        await groups.ensure_group(self._redis, self.config.stream, self.config.group)

    # ---- reading -----------------------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.config.concurrency - len(self._tasks)

    async def _read_new(self) -> int:
        """Burst mode: read what fits in the free slots, without blocking. It waits for a slot first, so a busy
        consumer is never mistaken for an empty stream."""
        while self._free_slots() <= 0:
            await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        count = min(self.config.count, self._free_slots())
        response = await self._redis.xreadgroup(
            self.config.group, self.config.consumer, {self.config.stream: ">"}, count=count
        )
        entries = groups.entries(response)
        for entry_id, fields in entries:
            self._dispatch(text(entry_id), fields, 1)
        return len(entries)

    async def _consume_own_pending(self) -> None:
        """Messages this consumer name was given before a restart (same name = same pending list)."""
        cursor = "0"
        while not self._stopping.is_set():
            response = await self._redis.xreadgroup(
                self.config.group, self.config.consumer, {self.config.stream: cursor}, count=self.config.count
            )
            entries = groups.entries(response)
            if not entries:
                return
            await self._dispatch_claimed(entries)
            cursor = text(entries[-1][0])
            await self._wait_all()

    async def _reclaim_once(self, min_idle_ms: int) -> int:
        if self._free_slots() <= 0:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        self._queue_reclaim(pipe, min_idle_ms)
        (reply,) = await pipe.execute()
        return await self._reclaimed(reply)

    def _queue_reclaim(self, pipe: aioredis.client.Pipeline, min_idle_ms: int) -> None:
        """Queue one XAUTOCLAIM step (from the carried cursor, at most the free slots) in ``pipe``: a consumer set
        sends its streams' steps in one round trip."""
        c = self.config
        pipe.xautoclaim(c.stream, c.group, c.consumer, min_idle_ms, self._claim_cursor, count=self._free_slots())

    async def _reclaimed(self, reply: Any) -> int:
        """Handle a reply of ``_queue_reclaim``'s XAUTOCLAIM; how many entries it claimed."""
        cursor, entries, deleted = reply
        self._claim_cursor = text(cursor)
        if deleted:
            # Trimmed away while pending: Redis already dropped them from the pending list; say so loudly.
            self._log.warning("stream.pending_trimmed", count=len(deleted))
        if entries:
            STREAM_RECLAIMED.labels(*self._labels).inc(len(entries))
            self._log.info("stream.reclaimed", count=len(entries))
            await self._dispatch_claimed(entries)
        return len(entries)

    def _trim_due(self, now: float) -> bool:
        """Whether a trim is due: at most every ``trim_interval_s``, once a message was finished since the last."""
        every = self.config.trim_interval_s
        return bool(every) and self.processed != self._trimmed_at and now >= self._next_trim

    async def _trim_if_due(self) -> None:
        if not self._trim_due(time.monotonic()):
            return
        every = self.config.trim_interval_s
        finished = self.processed
        await self._trimmer.trim()
        self._trimmed_at, self._next_trim = finished, time.monotonic() + every

    async def _dispatch_claimed(self, entries: list[Any]) -> None:
        ids = [text(entry_id) for entry_id, _ in entries]
        counts = await self._delivery_counts(ids)
        inflight = set(self._tasks.values())
        for entry_id, fields in entries:
            text_id = text(entry_id)
            if text_id in inflight or text_id not in counts:
                continue  # already being handled here, or acknowledged since it was claimed
            if fields is None:
                # A pending entry whose content was trimmed: nothing left to handle or dead-letter.
                await self._redis.xack(self.config.stream, self.config.group, text_id)
                continue
            self._dispatch(text_id, fields, counts[text_id])

    async def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        # Between the claimed ids lie at most this consumer's in-flight entries.
        others = len(self._tasks) + 1
        c = self.config
        return await groups.delivery_counts(self._redis, c.stream, c.group, c.consumer, ids, others=others)

    # ---- handling ----------------------------------------------------------------------------------------------

    def _dispatch(self, entry_id: str, fields: dict[Any, Any], deliveries: int) -> None:
        task = asyncio.create_task(self._process(entry_id, fields, deliveries), name=f"stream-msg-{entry_id}")
        self._tasks[task] = entry_id
        self._busy.set()
        self._idle.clear()
        self._m_inflight.inc()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not self._tasks:
            self._busy.clear()
            self._idle.set()
        self._m_inflight.dec()
        if not task.cancelled() and task.exception() is not None:
            self._log.error("stream.task_crashed", error=repr(task.exception()))

    async def _process(self, entry_id: str, fields: dict[Any, Any], deliveries: int) -> None:
        with structlog.contextvars.bound_contextvars(msg_id=entry_id, stream=self._labels[0]):
            raw = message_json(fields)
            try:
                if raw is None:
                    raise msgspec.DecodeError(f"entry has no {FIELD.decode()!r} field")
                message = self._decoder.decode(raw)
            except msgspec.DecodeError as exc:
                await self._dead_letter(entry_id, fields, "undecodable", str(exc), deliveries)
                return
            if deliveries > self.config.max_deliveries:
                await self._dead_letter(entry_id, fields, "delivery_cap", "delivery cap reached", deliveries)
                return
            backoff = Backoff(initial=0.2, maximum=self.config.max_retry_delay)
            while True:
                try:
                    await self._call_handler(message, Delivery(self.config.stream, entry_id, deliveries))
                except PermanentError as exc:
                    await self._dead_letter(entry_id, fields, "permanent_error", str(exc), deliveries)
                    return
                except Exception as exc:
                    STREAM_RETRIES.labels(*self._labels).inc()
                    if deliveries >= self.config.max_deliveries:
                        await self._dead_letter(entry_id, fields, "delivery_cap", _describe(exc), deliveries)
                        return
                    delay = exc.delay if isinstance(exc, TemporaryError) else backoff.next()
                    self._log.warning(
                        "stream.handler_failed",
                        error=_describe(exc),
                        deliveries=deliveries,
                        retry_in=round(delay, 3),
                        exc_info=not isinstance(exc, TemporaryError),
                    )
                    if not await self._retry_after(entry_id, min(delay, self.config.max_retry_delay)):
                        return  # stopping, or another consumer owns it now: it stays pending
                    deliveries += 1
                    continue
                await self._ack(entry_id)
                return

    async def _call_handler(self, message: M, delivery: Delivery) -> None:
        started = time.perf_counter()
        try:
            if self._key is None:
                await self._handler(message, delivery)
                return
            key = self._key(message)
            slot = self._key_locks.get(key)
            if slot is None:
                slot = self._key_locks[key] = _KeySlot()
            slot.users += 1
            try:
                async with slot.lock:
                    await self._handler(message, delivery)
            finally:
                slot.users -= 1
                if slot.users == 0:
                    del self._key_locks[key]
        finally:
            self._m_seconds.observe(time.perf_counter() - started)

    async def _retry_after(self, entry_id: str, delay: float) -> bool:
        """Wait, then take the message again in Redis (counting the delivery). False: give it up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        if self._stopping.is_set():
            return False
        claimed = await self._redis_retrying(
            lambda: self._redis.xclaim(self.config.stream, self.config.group, self.config.consumer, 0, [entry_id])
        )
        return bool(claimed)

    async def _ack(self, entry_id: str) -> None:
        """Acknowledge after success. Handlers finishing in the same loop iteration share one XACK, which
        roughly doubles throughput; each still returns only once its own ack is durable in Redis.
        """
        if self._ack_done is None:
            self._ack_done = asyncio.get_running_loop().create_future()
            flush = asyncio.create_task(self._flush_acks(), name="stream-ack-flush")
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        self._ack_batch.append(entry_id)
        await asyncio.shield(self._ack_done)
        self.processed += 1
        self._m_acked.inc()

    async def _flush_acks(self) -> None:
        await asyncio.sleep(0)  # let every handler finishing in this iteration join the batch
        batch, done = self._ack_batch, self._ack_done
        self._ack_batch, self._ack_done = [], None
        assert done is not None
        try:
            await self._redis_retrying(lambda: self._redis.xack(self.config.stream, self.config.group, *batch))
        except BaseException as exc:
            done.set_exception(exc)
            raise
        done.set_result(None)

    async def _dead_letter(
        self, entry_id: str, fields: dict[Any, Any], reason: DeadLetterReason, error: str, deliveries: int
    ) -> None:
        letter = DeadLetter(
            source_stream=self.config.stream,
            source_id=entry_id,
            group=self.config.group,
            consumer=self.config.consumer,
            reason=reason,
            error=error,
            deliveries=deliveries,
            payload=display_fields(fields),
        )

        async def write() -> None:
            # Dead letter and ack in one transaction: the message is in exactly one of the two places.
            pipe = self._redis.pipeline(transaction=True)
            groups.queue_dead_letter(pipe, self.config.dead_letter_stream, letter)
            await pipe.execute()

        await self._redis_retrying(write)
        self.processed += 1
        STREAM_MESSAGES.labels(*self._labels, "dead_lettered").inc()
        STREAM_DEAD_LETTERS.labels(*self._labels, reason).inc()
        self._log.error("stream.dead_lettered", reason=reason, error=error, deliveries=deliveries)

    async def _redis_retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a Redis call until it succeeds; give up (returning None) only when stopping."""
        backoff = Backoff()
        while True:
            try:
                return await call()
            except REDIS_TRANSIENT as exc:
                STREAM_REDIS_ERRORS.labels(*self._labels).inc()
                if self._stopping.is_set():
                    self._log.warning("stream.redis_gave_up_on_stop", error=str(exc))
                    return None
                await asyncio.sleep(backoff.next())

    # ---- background ----------------------------------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        interval = max(self.config.claim_idle_ms / 3000, 0.05)
        while True:
            await self._busy.wait()
            # Handlers that all finish within the interval leave nothing to keep fresh: the wait ends with them, in
            # their wake-up, instead of waking the idle process once more when the interval ends (an idle
            # reconciler did so after every heartbeat it handled).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._idle.wait()
                    continue
            ids = list(self._tasks.values())
            if not ids:
                continue
            with contextlib.suppress(*REDIS_TRANSIENT, ResponseError):
                await self._redis.xclaim(
                    self.config.stream, self.config.group, self.config.consumer, 0, list[Any](ids), justid=True
                )

    async def _wait_all(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _drain(self, grace: float) -> None:
        if not self._tasks:
            return
        self._log.info("stream.draining", inflight=len(self._tasks), grace_seconds=grace)
        _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            self._log.warning("stream.cancelled_on_stop", count=len(pending))


def _describe(exc: BaseException) -> str:
    said = str(exc)
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__
