"""Healing what a Redis failover (or a restart) may have lost.

Redis replicates asynchronously: the writes a primary acknowledged in its last moments may never reach the replica
that Sentinel promotes, and an AOF with ``appendfsync everysec`` loses up to a second on a crash. What can go that
way, and what brings it back:

* an agent's event batch (the API answered 202, the agent moved on): every agent is asked for its inventory again
  (``resync_inventory``), a snapshot that replaces whatever events were lost;
* a Cloudflare job or its result, a claim, a rule document: every target is planned again (forced), and the
  dns-worker's jobs compare with what Cloudflare holds before they change it, so a job done twice changes nothing;
* a lease or the rate limiter's bucket: they are re-created on first use (a second writer for one target for at
  most one lease period, a few calls more than the budget for one window; Cloudflare's own 429 is retried).

Agent keys and enrolments do not wait for this: the API has a replica acknowledge them before it answers
(``REDIS_WAIT_REPLICAS``).

How a failover is noticed: the data set's replication id (``INFO replication`` ``master_replid``) changes whenever a
replica is promoted or Redis restarts. Every replica of the reconciler reads it every 10 s (``Watch``: in the
wake-up of its stream reading when that comes first) and, when it
differs from the id it last swapped (or once a minute anyway), swaps it into ``Keys.redis_history`` with ``SET ...
GET``; the one that finds an older id there does the healing, once (if it fails half way, it puts the older id back
for the next check). An unchanged id costs one read: an idle reconciler makes no writes. A first start (no id stored
yet) and a data set that lost everything (the agent-key recovery of docs/operations.md takes over) heal nothing
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import structlog
from prometheus_client import Counter

from flareport_common.messages.commands import ResyncInventory
from flareport_common.replies import text
from flareport_reconciler.handlers import Reconciler

log = structlog.get_logger("flareport.reconciler.failover")

HEALED = Counter(
    "flareport_reconciler_redis_history_changes_total",
    "Redis failovers or restarts noticed (a new replication id), after which every agent resent its inventory "
    "and every target was planned again.",
)
CHECK_ERRORS = Counter("flareport_reconciler_redis_history_errors_total", "Failed checks of Redis' replication id.")

# A failover also breaks every connection, which the stream consumers survive on their own; this only bounds how
# long the agents wait to be asked for the inventories it may have lost.
CHECK_INTERVAL_SECONDS = 10.0
# The stream reading's longest sleep is this much shorter than the check interval (service.py): its wake-ups come
# from Redis ending a blocked read, up to 100 ms late (Redis' hz 10), so with equal periods this check's own timer
# would always fire first and wake the replica a second time.
SHARED_WAKE_MARGIN_S = 0.5
# An unchanged id is swapped in again this often anyway: a replica whose healing failed half way put the older id
# back, and another replica that had already seen the new id must notice that too.
CONFIRM_SECONDS = 60.0


async def replication_id(reconciler: Reconciler) -> str | None:
    """The data set's replication id; None when the node answering is no master (a demoted node still answering:
    the new master's id is what counts)."""
    info = await reconciler.redis.info("replication")
    return str(info["master_replid"]) if info.get("role") == "master" else None


async def check(reconciler: Reconciler, replid: str | None = None) -> bool:
    """Heal if the Redis data set changed history since the last check; True when this replica did it.
    ``replid``: the id just read (read here when not given)."""
    redis, keys = reconciler.redis, reconciler.keys
    if replid is None:
        replid = await replication_id(reconciler)
        if replid is None:
            return False
    stored = await redis.set(keys.redis_history, replid, get=True)  # the old value (GET), None when there was none
    previous = text(stored) if isinstance(stored, bytes | str) else None
    if previous is None or previous == replid:
        return False
    try:
        await _heal(reconciler, previous, replid)
    except BaseException:
        # Redis went away again mid-way: put the old id back so that the next check (here or elsewhere) heals.
        with contextlib.suppress(Exception):
            await redis.set(keys.redis_history, previous)
        raise
    return True


async def _heal(reconciler: Reconciler, previous: str, current: str) -> None:
    agents = sorted(text(a) for a in await reconciler.redis.smembers(reconciler.keys.agents_index))
    log.warning("failover.healing", previous=previous, current=current, agents=len(agents))
    for agent_id in agents:
        await reconciler.send_command(agent_id, ResyncInventory())
    await reconciler.reconcile("all", verify=False, force=True)
    HEALED.inc()


class Watch:
    """Checks at most ``interval`` apart, on its own timer or earlier: ``awake`` is told when another loop of the
    process (the stream reading, ``ConsumerSet.share_wakes``) is awake anyway, and a check that would fall due before
    that loop wakes again runs now instead. An idle reconciler then makes its check in the wake-up of its stream
    reading (every 9.5 s: ``SHARED_WAKE_MARGIN_S``), not in one of its own (it woke for it every 10 s too: a third
    of its idle wake-ups). The own timer still runs a check ``interval`` after the last one, whatever happens."""

    def __init__(self, reconciler: Reconciler, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        self._reconciler = reconciler
        self.interval = interval
        self._wake = asyncio.Event()  # a check due now (early), or stop
        self._stopping = False
        self._last = -math.inf  # when the last check began (monotonic)
        self.checks = 0

    def awake(self, sleeps_s: float) -> None:
        """Another loop is awake and will sleep up to ``sleeps_s``: check now if the next check falls due before it
        wakes again. The stream reading sleeps at most until its next reclaim pass, so a busy replica checks at most
        once per pass (every 5 s), an idle one once per pass of 10 s, in the pass's wake-up."""
        if self._last + self.interval <= time.monotonic() + sleeps_s:
            self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Check until ``stop()``; an error (Redis unreachable mid-failover) only waits for the next check."""
        swapped: str | None = None  # the id this replica last swapped in successfully
        swapped_at = 0.0
        while not self._stopping:
            self._wake.clear()
            self._last = time.monotonic()
            self.checks += 1
            try:
                replid = await replication_id(self._reconciler)
                if replid is not None and (replid != swapped or time.monotonic() - swapped_at >= CONFIRM_SECONDS):
                    await check(self._reconciler, replid)
                    swapped, swapped_at = replid, time.monotonic()
            except Exception as exc:  # the next check retries; healing is idempotent
                CHECK_ERRORS.inc()
                log.warning("failover.check_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._last + self.interval - time.monotonic())):
                    await self._wake.wait()
