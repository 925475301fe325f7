"""Time-driven work, run by every replica; each item is taken by whichever replica gets there first.

* Grace deletions: due members of the time-ordered set are claimed by ZREM inside a Lua script that also
  removes the claim (only if it is still due: a restart in between cancelled it) and marks the hostname dirty,
  all atomically — so a deletion happens exactly once in effect and survives the replica dying right after.
* Dirty hostnames older than the plan timeout (left by a replica that died between writing claims and
  finishing their refresh) are refreshed again.
* Offline detection: agents whose last contact is older than AGENT_OFFLINE_SECONDS become ``offline``;
  nothing is removed (their cloudflared may still be serving).
* Pruning: inventory entries of containers stopped longer than the retention period (``max(grace period, 1 h)``
  and past their own grace label) are deleted and the agent's pruning floor (``Keys.agent_inventory``) raised
  to their newest sequence number, in one transaction watching the entries and the floor; late messages about
  them are then recognised as stale by the floor (see ``inventory``).
* Recovery hold: after the API restored an agent key (Redis lost its data), jobs keep what they do not list
  (``jobs.pruning``); when FLAREPORT_RECOVERY_HOLD_SECONDS have passed one replica plans every target again.
* Drift check: every DRIFT_CHECK_SECONDS one replica (a lease) plans every known target again and sends a
  ``verify_target`` job for each, so drift made in the Cloudflare dashboard is found and repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import structlog
from prometheus_client import Counter
from redis.exceptions import WatchError

from flareport_reconciler.agents import went_silent
from flareport_reconciler.claims import pending_member
from flareport_reconciler.inventory import ContainerEntry, newest_seq, prunable
from flareport_reconciler.jobs import pruning
from flareport_reconciler.records import TX_RETRIES, text, update_agent
from flareport_reconciler.scripts import DeleteDue, DueDeletion
from flareport_reconciler.spine import Spine

log = structlog.get_logger("flareport.reconciler.background")

GRACE_DELETIONS = Counter("flareport_reconciler_grace_deletions_total", "Rules removed after their grace period.")
OFFLINE = Counter("flareport_reconciler_agents_offline_total", "Agents marked offline after missing heartbeats.")
SWEPT = Counter("flareport_reconciler_swept_hostnames_total", "Hostnames refreshed by the sweeper (left by a crash).")
PRUNED = Counter("flareport_reconciler_pruned_containers_total", "Inventory entries of long-stopped containers pruned.")
BACKGROUND_ERRORS = Counter("flareport_reconciler_background_errors_total", "Failed background passes.", ["task"])

BATCH = 200
# Stopped containers are remembered at least this long (and at least the grace period) to recognise late events.
PRUNE_AFTER_SECONDS = 3600.0
# Often enough that stops of containers never heard running (``inventory.ORPHAN_RETENTION_SECONDS``) go soon.
PRUNE_INTERVAL_SECONDS = 60.0

_entry_decoder = msgspec.json.Decoder(ContainerEntry)


class Background:
    def __init__(self, spine: Spine) -> None:
        self.r = spine
        self._delete_due = DeleteDue(spine.redis)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self.r.settings
        next_drift = time.monotonic() + settings.drift_check_seconds
        next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
        while not self._stopping.is_set():
            await self.pass_once()
            if time.monotonic() >= next_prune:
                await self._guard("prune", self.prune_stopped())
                next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
            if time.monotonic() >= next_drift:
                await self._guard("drift", self.drift_check())
                next_drift = time.monotonic() + settings.drift_check_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=settings.sweep_interval_seconds)

    async def pass_once(self) -> None:
        await self._guard("grace", self.process_due_deletions())
        await self._guard("sweep", self.sweep_dirty())
        await self._guard("offline", self.detect_offline())
        await self._guard("recovery", self.end_recovery_hold())

    async def end_recovery_hold(self, now: float | None = None) -> bool:
        """Once the hold after a loss of data is over, plan every target again (one replica), so records and
        rules kept for agents that never came back are removed now. True when this replica did it.
        """
        keys, redis = self.r.keys, self.r.redis
        recovered_at = await redis.get(keys.keys_recovered_at)
        now = time.time() if now is None else now
        if recovered_at is None or not pruning(recovered_at, self.r.settings.recovery_hold_seconds, now):
            return False
        # GETSET: of the replicas that see the hold over, only the first finds another value there.
        if await redis.getset(keys.recovery_released, recovered_at) == recovered_at:
            return False
        log.info("background.recovery_hold_over", recovered_at=text(recovered_at))
        await self.r.reconcile("all", verify=False, force=True)
        return True

    async def _guard(self, task: str, work: object) -> None:
        try:
            await work  # type: ignore[misc]
        except Exception as exc:  # one failing pass must not stop the loop; the next pass retries
            BACKGROUND_ERRORS.labels(task).inc()
            log.warning("background.failed", task=task, error=repr(exc))

    async def process_due_deletions(self, now: float | None = None) -> int:
        keys, redis = self.r.keys, self.r.redis
        now = time.time() if now is None else now
        deleted = 0
        while True:
            due = await redis.zrangebyscore(keys.pending_deletions, "-inf", now, start=0, num=BATCH)
            if not due:
                return deleted
            marks: dict[str, int] = {}
            for raw in due:
                member = text(raw)
                hostname, _, claim_id = member.partition("\x1f")
                mark = int(time.time() * 1000)
                answer = await self._delete_due(
                    keys,
                    hostname=hostname,
                    claim_id=claim_id,
                    pending_member=pending_member(hostname, claim_id),
                    now=now,
                    mark_ms=mark,
                )
                if answer == DueDeletion.DELETED:
                    marks[hostname] = mark
                    GRACE_DELETIONS.inc()
            deleted += len(marks)
            await self.r.converge(marks)
            if len(due) < BATCH:
                return deleted

    async def sweep_dirty(self) -> int:
        keys, redis = self.r.keys, self.r.redis
        older_than = int(time.time() * 1000) - 2 * self.r.coalescer.stale_plan_ms
        rows = await redis.zrangebyscore(keys.dirty_hostnames, "-inf", older_than, start=0, num=BATCH, withscores=True)
        marks = {text(row[0]): int(row[1]) for row in rows}
        if marks:
            SWEPT.inc(len(marks))
            log.info("background.sweeping", hostnames=len(marks))
            await self.r.converge(marks)
        return len(marks)

    async def detect_offline(self) -> int:
        keys, redis = self.r.keys, self.r.redis
        cutoff = time.time() - self.r.settings.agent_offline_seconds
        stale = await redis.zrangebyscore(keys.agents_last_seen, "-inf", cutoff)
        count = 0
        for raw in stale:
            record = await update_agent(redis, keys, text(raw), went_silent(cutoff))
            if record is not None and record.status == "offline":
                count += 1
                OFFLINE.inc()
        # Handled agents leave the set (by score, so one whose heartbeat just raised its score stays);
        # the next heartbeat puts an offline agent back.
        await redis.zremrangebyscore(keys.agents_last_seen, "-inf", cutoff)
        return count

    async def prune_stopped(self, now: float | None = None) -> int:
        """Forget containers stopped longer than the retention period; returns how many entries were pruned."""
        now = time.time() if now is None else now
        grace = float(self.r.settings.grace_period_seconds)
        retention = max(grace, PRUNE_AFTER_SECONDS)
        agents = sorted(text(a) for a in await self.r.redis.smembers(self.r.keys.agents_index))
        pruned = 0
        for agent_id in agents:
            pruned += await self._prune_agent(agent_id, now, retention, grace)
        PRUNED.inc(pruned)
        return pruned

    async def _prune_agent(self, agent_id: str, now: float, retention: float, grace: float) -> int:
        keys, redis = self.r.keys, self.r.redis
        ids = sorted(text(c) for c in await redis.smembers(keys.agent_containers(agent_id)))
        if not ids:
            return 0
        raws = await redis.mget([keys.agent_container(agent_id, cid) for cid in ids])
        candidates = [
            cid
            for cid, raw in zip(ids, raws, strict=True)
            if raw is not None and prunable(_entry_decoder.decode(raw), now, retention, grace)
        ]
        if not candidates:
            return 0
        entry_keys = [keys.agent_container(agent_id, cid) for cid in candidates]
        floor_key = keys.agent_inventory(agent_id)
        async with redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # An event applied meanwhile changes an entry or the floor: the check is made again.
                    await pipe.watch(*entry_keys, floor_key)
                    values = await pipe.mget([*entry_keys, floor_key])
                    gone = {
                        cid: entry
                        for cid, raw in zip(candidates, values, strict=False)
                        if raw is not None and prunable(entry := _entry_decoder.decode(raw), now, retention, grace)
                    }
                    if not gone:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return 0
                    floor = max(int(values[-1] or 0), *(newest_seq(e) for e in gone.values()))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(*(keys.agent_container(agent_id, cid) for cid in gone))
                    pipe.srem(keys.agent_containers(agent_id), *gone)
                    pipe.set(floor_key, floor)
                    await pipe.execute()
                    return len(gone)
                except WatchError:
                    TX_RETRIES.labels("prune").inc()
                    continue

    async def drift_check(self) -> bool:
        keys, redis = self.r.keys, self.r.redis
        lease_ms = int(self.r.settings.drift_check_seconds * 900)
        if not await redis.set(keys.drift_lease, "1", nx=True, px=lease_ms):
            return False
        log.info("background.drift_check")
        await self.r.reconcile("all", verify=True, force=False)
        return True
