"""The read loop of the stream runtime: one loop for one or several streams read through one consumer group.

Why one loop for several streams: a process consuming three streams (the reconciler: events, intents, cf-results)
with a loop each woke three times as often as a process with one, idle or not: a reclaim round trip and a blocking
read per stream per claim interval. Read together, an idle set makes one round trip of reclaims (an XAUTOCLAIM per
stream, pipelined) and one XREADGROUP over all its streams per claim interval, however many streams it has; a single
``StreamConsumer`` runs this same loop as a set of one.

What stays per stream, in its ``StreamConsumer``: handlers and their concurrency, acknowledgements, dead letters,
the keep-alive of running handlers, trimming, metrics, and order (one XREADGROUP answers each stream's entries in
order, and they are dispatched in that order). A stream whose handler slots are all taken is left out of the read,
and the read's COUNT (which XREADGROUP applies per stream) is the fewest free slots among the streams read: no
stream is given more entries than it has room for. While a stream is full the loop waits for one of its slots (at
most ``SATURATED_WAIT_MS``) and then reads without blocking: a blocking read of the others would leave it unread
until that read ended, whatever its handlers did meanwhile.

Reclaims are common to the set: one pass claims on every stream, and the wait to the next pass doubles while a pass
found nothing anywhere, up to the smallest ``claim_interval_max_s`` of the set; a pass that found something brings it
back to ``claim_interval_s`` (new entries read do not: each heartbeat of an idle stack cost a wake-up 5 s later). So
the bound on taking over a dead consumer's message is the single stream's: at most ``claim_idle_ms +
claim_interval_max_s`` after its delivery (plus at most ``PERIODIC_DEFER_S``: periodic work that falls due while a
handler runs waits for it, so that it never runs beside a message on its way to Cloudflare).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flareport_common.backoff import Backoff
from flareport_common.metrics import STREAM_REDIS_ERRORS
from flareport_common.replies import text
from flareport_common.streams import groups

if TYPE_CHECKING:
    from flareport_common.streams.consumer import StreamConsumer

log = structlog.get_logger("flareport.streams")

# Errors after which Redis is worth trying again (the server restarted, the network blipped, it is loading).
REDIS_TRANSIENT = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError)
# The longest the other streams wait while one stream's handler slots are all taken (its handlers stuck): a read
# of theirs every second then, instead of one blocking read that would leave the full stream unread meanwhile.
SATURATED_WAIT_MS = 1000
# The longest periodic work (reclaims, trims) that fell due waits for the handlers running: long enough for a
# message's handler (milliseconds), short against the reclaim bound (claim_idle_ms + the claim interval).
PERIODIC_DEFER_S = 0.25


class ConsumerSet:
    """Reads the streams of ``consumers`` (one group, one consumer name, one Redis client) in one loop.

    The consumers share one stop: ``stop()`` here or on any of them stops the whole set, as they share its read.
    """

    # The consumers' internals (slots, dispatch, reclaim replies, trimming) are this package's own: the set is the
    # loop that drives them, split from ``StreamConsumer`` so that one loop can drive several.

    def __init__(self, consumers: Sequence[StreamConsumer[Any]]) -> None:
        if not consumers:
            raise ValueError("a consumer set needs at least one consumer")
        first = consumers[0]
        for c in consumers[1:]:
            same = (c.config.group, c.config.consumer) == (first.config.group, first.config.consumer)
            if not same or c._redis is not first._redis:
                raise ValueError("the consumers of a set share one group, one consumer name and one Redis client")
        by_stream = {c.config.stream: c for c in consumers}
        if len(by_stream) != len(consumers):
            raise ValueError("each stream of a set has one consumer")
        self._consumers = tuple(consumers)
        self._by_stream = by_stream
        self._redis: aioredis.Redis = first._redis
        self._stopping = first._stopping
        for c in consumers:
            if c.stopping:
                self._stopping.set()
            c._stopping = self._stopping
        configs = [c.config for c in consumers]
        self._group, self._consumer = first.config.group, first.config.consumer
        self._block_ms = min(c.block_ms for c in configs)
        self._claim_idle_ms = min(c.claim_idle_ms for c in configs)
        self._claim_base = min(c.claim_interval_s for c in configs)
        self._claim_most = max(self._claim_base, min(c.longest_claim_interval_s for c in configs))
        self._claim_every = self._claim_base  # the reclaim interval now: longer while reclaims find nothing
        self._read_margin_s = read_timeout_s(self._redis)
        self._wake_hooks: list[Callable[[float], None]] = []
        self._log = log.bind(streams=[c.metrics_label or c.stream for c in configs], group=self._group)

    def stop(self) -> None:
        """Stop reading; ``run()`` returns once in-flight handlers finished or their grace period ran out."""
        self._stopping.set()

    def share_wakes(self, hook: Callable[[float], None]) -> None:
        """Call ``hook(seconds)`` before each blocking read that follows an idle one (the set's own wake-up, not one
        that brought work), with the longest the read may block: periodic work of the process that falls due before
        then can start now, in this wake-up, rather than wake the process again on a timer of its own (an idle
        process wakes for its streams every claim interval anyway). Not after a read that brought work: the
        periodic work would then run beside the work a message brings, on its way to Cloudflare (a single start's
        control-plane share went from 8 to 16 ms with the reconciler's failover check run there); the hook's owner
        keeps its own timer for a busy process. The hook must only look and schedule (set an event), never wait:
        the read is not sent before it returns."""
        self._wake_hooks.append(hook)

    async def run(self) -> None:
        backoff = Backoff()
        keepalives = [asyncio.create_task(c._keepalive_loop(), name="stream-keepalive") for c in self._consumers]
        next_claim = 0.0
        deferred_until: float | None = None  # periodic work waiting for running handlers, until then at most
        first = True
        idle = True  # the last read brought nothing and nothing runs: the next wake-up is the set's own
        try:
            while not self._stopping.is_set():
                try:
                    if first:
                        for c in self._consumers:
                            await c.ensure_group()
                        for c in self._consumers:
                            await c._consume_own_pending()
                        first = False
                    now = time.monotonic()
                    due = now >= next_claim or any(c._trim_due(now) for c in self._consumers)
                    running = any(c._tasks for c in self._consumers)
                    if due and running and (deferred_until is None or now < deferred_until):
                        # A message's handler runs on this loop: the periodic round trips (reclaim, trims) would
                        # run beside it on its way to Cloudflare, so they wait until it is done, at most
                        # PERIODIC_DEFER_S (then they run anyway: a loop that is always busy still reclaims).
                        if deferred_until is None:
                            deferred_until = now + PERIODIC_DEFER_S
                        block_ms = max(1, min(self._block_ms, int((deferred_until - now) * 1000)))
                    else:
                        deferred_until = None
                        if now >= next_claim:
                            claimed = await self._reclaim()
                            self._claim_every = self._next_claim_interval(claimed)
                            next_claim = time.monotonic() + self._claim_every
                        for c in self._consumers:
                            await c._trim_if_due()
                        # Block until the next reclaim is due: an idle set wakes once per claim interval.
                        until_claim = int((next_claim - time.monotonic()) * 1000)
                        block_ms = max(1, min(self._block_ms, until_claim))
                    if idle:
                        for hook in self._wake_hooks:
                            hook(block_ms / 1000)
                    # New entries read leave the reclaim interval as it is: bringing it back to the base made every
                    # heartbeat of an idle stack cost a reclaim wake-up 5 s later; the takeover bound depends only on
                    # the longest interval, and a reclaim that finds something brings the base back.
                    read = await self._read_new(block_ms)
                    idle = read == 0 and not any(c._tasks for c in self._consumers)
                    backoff.reset()
                except REDIS_TRANSIENT as exc:
                    await self._on_redis_error(exc, backoff)
                except ResponseError as exc:
                    if not groups.stream_lost(exc):
                        # Not ours to fix (a key of the wrong type, a script error): say so, wait, try again,
                        # but never let one Redis reply end the service.
                        self._log.error("stream.redis_error", error=str(exc))
                        await self._on_redis_error(exc, backoff)
                        continue
                    # Redis lost a stream or the group (restarted without data, FLUSHALL while we were blocked
                    # reading: UNBLOCKED): make them again.
                    self._count_redis_error()
                    self._log.warning("stream.group_missing", error=str(exc))
                    first = True
        finally:
            for keepalive in keepalives:
                keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*keepalives)
            await asyncio.gather(*(c._drain(c.config.grace_seconds) for c in self._consumers))

    # ---- reclaiming ----------------------------------------------------------------------------------------------

    async def _reclaim(self) -> int:
        """One reclaim pass over every stream with a free handler slot, in one round trip; how many were claimed."""
        ready = [c for c in self._consumers if c._free_slots() > 0]
        if not ready:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for c in ready:
            c._queue_reclaim(pipe, self._claim_idle_ms)
        replies = await pipe.execute()
        claimed = 0
        for c, reply in zip(ready, replies, strict=True):
            claimed += await c._reclaimed(reply)
        return claimed

    def _next_claim_interval(self, claimed: int) -> float:
        """The wait until the next reclaim pass. Doubled only after a pass that walked every stream's whole pending
        list (each cursor is back at the start) and found nothing: a long pending list is walked at the base pace."""
        if claimed or any(c._claim_cursor != "0-0" for c in self._consumers):
            return self._claim_base
        return min(self._claim_every * 2, self._claim_most)

    # ---- reading -------------------------------------------------------------------------------------------------

    async def _read_new(self, block_ms: int) -> int:
        """Read, on every stream with free handler slots, what fits in them; waits up to ``block_ms`` (for entries,
        or for a slot when none is free) so the loop can reclaim and notice a stop."""
        full = [c for c in self._consumers if c._free_slots() <= 0]
        if full:
            # A stream left out of a blocking read for want of slots would be read again only when that read ends
            # (up to the claim interval), however soon its handlers finish: under a flood its freed slots sat idle
            # and its entries waited seconds each. So wait for one of its slots first (handlers take milliseconds;
            # the other streams wait as long, at most ``SATURATED_WAIT_MS``), then read without blocking.
            running = [task for c in full for task in c._tasks]
            wait_s = min(block_ms, SATURATED_WAIT_MS) / 1000
            await asyncio.wait(running, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        ready = [c for c in self._consumers if c._free_slots() > 0]
        if not ready:
            return 0
        # Block only when every stream is in the read.
        block = block_ms if len(ready) == len(self._consumers) else None
        count = min(min(c.config.count, c._free_slots()) for c in ready)
        response = await self._unless_stopped(self._blocking_read([c.config.stream for c in ready], count, block))
        read = 0
        for stream, entries in groups.stream_entries(response):
            consumer = self._by_stream[stream]
            for entry_id, fields in entries:
                consumer._dispatch(text(entry_id), fields, 1)
            read += len(entries)
        return read

    async def _blocking_read(self, streams: list[str], count: int, block_ms: int | None) -> Any:
        """XREADGROUP ... BLOCK on a connection of the pool whose read timeout is stretched by the block: with the
        connections' own timeout (redis-py's default 5 s) a longer block would fail as a timeout, so an idle consumer
        had to read again every few seconds. A dead connection is still noticed: the read gives up its margin after
        the block. Any error or a cancellation drops the connection, as redis-py does, so that no late answer
        reaches another command."""
        blocking = ("BLOCK", block_ms) if block_ms is not None else ()  # None: answer at once
        args = ("XREADGROUP", "GROUP", self._group, self._consumer, "COUNT", count, *blocking, "STREAMS")
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_command(*args, *streams, *([">"] * len(streams)))
            # redis-py's own per-read timeout answers None when it runs out, as an empty read does, and leaves the
            # late answer on the connection: the deadline is kept here instead.
            async with asyncio.timeout((block_ms or 0) / 1000 + self._read_margin_s):
                response = await connection.read_response(timeout=math.inf)
        except TimeoutError as exc:
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError(f"no answer to a read blocked {block_ms} ms") from exc
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        parse = self._redis.response_callbacks.get("XREADGROUP")
        return parse(response) if parse is not None and response is not None else response

    async def _unless_stopped(self, read: Awaitable[Any]) -> Any:
        """The blocking read's answer, or None when ``stop()`` came first. Cancelling the read closes its
        connection (redis-py disconnects on cancellation), so no late answer reaches another command; entries Redis
        delivered meanwhile stay pending for a reclaim, as after a crash.
        """
        task = asyncio.ensure_future(read)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this loop itself cancelled: the read goes with it
            task.cancel()
            raise
        finally:
            stopping.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *REDIS_TRANSIENT):
            await task
        return None

    # ---- Redis trouble -------------------------------------------------------------------------------------------

    def _count_redis_error(self) -> None:
        for c in self._consumers:  # a failed read or reclaim pass concerns every stream of the set
            STREAM_REDIS_ERRORS.labels(*c._labels).inc()

    async def _on_redis_error(self, exc: BaseException, backoff: Backoff) -> None:
        self._count_redis_error()
        delay = backoff.next()
        self._log.warning("stream.redis_unavailable", error=str(exc) or type(exc).__name__, retry_in=round(delay, 3))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def read_timeout_s(redis: aioredis.Redis) -> float:
    """The read timeout of the client's connections (the one the class gives when the client sets none), added to a
    blocking read's block as its margin; 5 s when there is none."""
    pool = redis.connection_pool
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    if "socket_timeout" in kwargs:
        timeout = kwargs["socket_timeout"]
    else:  # not set for this client: the connection class's own default applies (redis-py 8: 5 s)
        timeout = _class_default(pool.connection_class, "socket_timeout")
    if not isinstance(timeout, int | float) or timeout <= 0:
        return 5.0
    return float(timeout)


def _class_default(cls: type, name: str) -> Any:
    """The default of ``name`` in the first ``__init__`` along the class's MRO that declares it."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameter = inspect.signature(init).parameters.get(name)
        if parameter is not None:
            return None if parameter.default is inspect.Parameter.empty else parameter.default
    return None
