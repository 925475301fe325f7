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
replica is promoted or Redis restarts. Every replica of the reconciler reads it every 10 s and, when it
differs from the id it last swapped (or once a minute anyway), swaps it into ``Keys.redis_history`` with ``SET ...
GET``; the one that finds an older id there does the healing, once (if it fails half way, it puts the older id back
for the next check). An unchanged id costs one read: an idle reconciler makes no writes. A first start (no id stored
yet) and a data set that lost everything (the agent-key recovery of docs/operations.md takes over) heal nothing
here.
"""

from __future__ import annotations

import asyncio
import contextlib
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


async def watch(reconciler: Reconciler, stopping: asyncio.Event, interval: float = CHECK_INTERVAL_SECONDS) -> None:
    """Check until ``stopping`` is set; an error (Redis unreachable mid-failover) only waits for the next check."""
    swapped: str | None = None  # the id this replica last swapped in successfully
    swapped_at = 0.0
    while not stopping.is_set():
        try:
            replid = await replication_id(reconciler)
            if replid is not None and (replid != swapped or time.monotonic() - swapped_at >= CONFIRM_SECONDS):
                await check(reconciler, replid)
                swapped, swapped_at = replid, time.monotonic()
        except Exception as exc:  # the next check retries; healing is idempotent
            CHECK_ERRORS.inc()
            log.warning("failover.check_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)
