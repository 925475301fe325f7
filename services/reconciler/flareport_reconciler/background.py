"""Time-driven work, run by every replica; each item is taken by whichever replica gets there first (the store
side, and how each item is taken: ``upkeep``).

* Grace deletions: due members of the time-ordered set are claimed by ZREM inside a Lua script that also
  removes the claim (only if it is still due: a restart in between cancelled it) and marks the hostname dirty,
  all atomically — so a deletion happens exactly once in effect and survives the replica dying right after.
* Dirty hostnames older than the plan timeout (left by a replica that died between writing claims and
  finishing their refresh) are refreshed again.
* Held plans left behind: a target held for its coalescing window (``coalesce``) whose replica died before the
  window ended stays in ``Keys.targets_waiting``; once it is ``stale_plan_ms`` overdue it is touched again, which
  takes it over and plans it.
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

When passes run: a pass reads the oldest item of each kind (one round trip), and the next pass is when the earliest
of them falls due, but no sooner than FLAREPORT_SWEEP_INTERVAL_SECONDS after this one and no later than
``IDLE_PASSES`` of those intervals (16 s at the default 2 s). So an idle replica wakes every 16 s, not every 2 s;
what it cannot know of is found within that bound: items other replicas wrote after its pass (a deletion scheduled
by a replica that died since, a mark or hold it left behind). A grace deletion this replica schedules wakes it for
its end (``Claims.on_deletion``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import structlog
from prometheus_client import Counter

from flareport_reconciler.agents import went_silent
from flareport_reconciler.inventory import prunable
from flareport_reconciler.jobs import pruning
from flareport_reconciler.records import update_agent
from flareport_reconciler.spine import Spine
from flareport_reconciler.targets import Target
from flareport_reconciler.upkeep import Due, Upkeep

log = structlog.get_logger("flareport.reconciler.background")

GRACE_DELETIONS = Counter("flareport_reconciler_grace_deletions_total", "Rules removed after their grace period.")
OFFLINE = Counter("flareport_reconciler_agents_offline_total", "Agents marked offline after missing heartbeats.")
SWEPT = Counter("flareport_reconciler_swept_hostnames_total", "Hostnames refreshed by the sweeper (left by a crash).")
SWEPT_TARGETS = Counter(
    "flareport_reconciler_swept_targets_total", "Targets whose held plan the sweeper took over (left by a crash)."
)
PRUNED = Counter("flareport_reconciler_pruned_containers_total", "Inventory entries of long-stopped containers pruned.")
BACKGROUND_ERRORS = Counter("flareport_reconciler_background_errors_total", "Failed background passes.", ["task"])

BATCH = 200
# Stopped containers are remembered at least this long (and at least the grace period) to recognise late events.
PRUNE_AFTER_SECONDS = 3600.0
# Often enough that stops of containers never heard running (``inventory.ORPHAN_RETENTION_SECONDS``) go soon.
PRUNE_INTERVAL_SECONDS = 60.0
# With nothing due sooner, a pass every this many sweep intervals: the bound on finding what another replica left.
IDLE_PASSES = 8


class Background:
    def __init__(self, spine: Spine) -> None:
        self.r = spine
        self.store = Upkeep(spine.redis, spine.keys)
        self._stopping = asyncio.Event()
        self._woken = asyncio.Event()
        # The earliest end of a grace period written here since the last pass began (epoch seconds): its probe may
        # have read Redis before that write committed.
        self._wake_at = math.inf
        # When the sleep under way ends (epoch seconds) if nothing is known to fall due before it (an idle pass), else
        # None: see ``awake``.
        self._idle_until: float | None = None
        spine.claims.on_deletion = self.wake_at

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()

    def wake_at(self, at: float) -> None:
        """A grace period written here ends at ``at`` (epoch seconds): pass then, if the loop would wait longer."""
        if at < self._wake_at:
            self._wake_at = at
            self._woken.set()

    def awake(self, sleeps_s: float) -> None:
        """The stream reading (``ConsumerSet.share_wakes``) is awake and sleeps up to ``sleeps_s``: an idle pass that
        would fall due before it wakes again runs now, in this wake-up, rather than wake the replica on its own
        timer (an idle replica passed every 16 s in a wake-up of its own). A pass timed for a known item keeps its
        time: sooner, the item would not be due yet."""
        if self._idle_until is not None and time.time() + sleeps_s >= self._idle_until:
            self._wake_at = -math.inf  # still no sooner than a sweep interval after the last pass (``_sleep``)
            self._woken.set()

    async def run(self) -> None:
        settings = self.r.settings
        next_drift = time.monotonic() + settings.drift_check_seconds
        next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
        while not self._stopping.is_set():
            self._wake_at = math.inf
            due = await self.pass_once()
            if time.monotonic() >= next_prune:
                await self._guard("prune", self.prune_stopped())
                next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
            if time.monotonic() >= next_drift:
                await self._guard("drift", self.drift_check())
                next_drift = time.monotonic() + settings.drift_check_seconds
            timers = min(next_prune, next_drift) - time.monotonic()
            wait = self.wait_after(due, time.time(), timers)
            await self._sleep(wait, idle=wait >= settings.sweep_interval_seconds * IDLE_PASSES)

    async def _sleep(self, seconds: float, *, idle: bool = False) -> None:
        """Wait ``seconds``, or less when ``wake_at`` names an earlier time (never less than a sweep interval
        after the pass: a burst of changes does not make a pass each). ``idle``: nothing is known to fall due
        before, so ``awake`` may end the wait early."""
        floor = time.time() + self.r.settings.sweep_interval_seconds
        end = time.time() + seconds
        self._idle_until = end if idle else None
        try:
            while not self._stopping.is_set():
                self._woken.clear()
                left = max(min(end, self._wake_at), floor) - time.time()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), timeout=left)
        finally:
            self._idle_until = None

    def wait_after(self, due: Due | None, now: float, timers: float) -> float:
        """Seconds until the next pass: when the earliest known item falls due (or the prune or drift timer
        fires, ``timers`` from now), between one sweep interval and ``IDLE_PASSES`` of them."""
        interval = self.r.settings.sweep_interval_seconds
        if due is None or due.recovery:  # Redis away, or a hold to end: its end is not in the probe
            return interval
        stale_s = self.r.coalescer.stale_plan_ms / 1000
        times = [now + timers]
        if due.deletion_at is not None:
            times.append(due.deletion_at)
        if due.oldest_mark_ms is not None:
            times.append(due.oldest_mark_ms / 1000 + 2 * stale_s)
        if due.oldest_held_ms is not None:
            times.append(due.oldest_held_ms / 1000 + stale_s)
        if due.oldest_seen is not None:
            times.append(due.oldest_seen + self.r.settings.agent_offline_seconds)
        return min(max(min(times) - now, interval), interval * IDLE_PASSES)

    async def pass_once(self) -> Due | None:
        """Each kind of work only when its oldest item is due: an idle pass is one round trip to Redis. Returns
        what the probe read (None: it failed)."""
        try:
            due = await self.store.due()
        except Exception as exc:  # Redis away: the guards below say so, each retried next pass
            log.debug("background.probe_failed", error=repr(exc))
            due = None
        now = time.time()
        if due is None or (due.deletion_at is not None and due.deletion_at <= now):
            await self._guard("grace", self.process_due_deletions())
        stale_ms = 2 * self.r.coalescer.stale_plan_ms
        if due is None or (due.oldest_mark_ms is not None and due.oldest_mark_ms <= now * 1000 - stale_ms):
            await self._guard("sweep", self.sweep_dirty())
        held_cutoff = now * 1000 - self.r.coalescer.stale_plan_ms
        if due is None or (due.oldest_held_ms is not None and due.oldest_held_ms <= held_cutoff):
            await self._guard("held", self.sweep_held())
        cutoff = now - self.r.settings.agent_offline_seconds
        if due is None or (due.oldest_seen is not None and due.oldest_seen <= cutoff):
            await self._guard("offline", self.detect_offline())
        if due is None or due.recovery:
            await self._guard("recovery", self.end_recovery_hold())
        return due

    async def end_recovery_hold(self, now: float | None = None) -> bool:
        """Once the hold after a loss of data is over, plan every target again (one replica), so records and
        rules kept for agents that never came back are removed now. True when this replica did it.
        """
        recovered_at = await self.store.recovered_at()
        now = time.time() if now is None else now
        if recovered_at is None or not pruning(recovered_at, self.r.settings.recovery_hold_seconds, now):
            return False
        if not await self.store.release_recovery(recovered_at):
            return False
        log.info("background.recovery_hold_over", recovered_at=recovered_at.decode(errors="replace"))
        await self.r.reconcile("all", verify=False, force=True)
        return True

    async def _guard(self, task: str, work: object) -> None:
        try:
            await work  # type: ignore[misc]
        except Exception as exc:  # one failing pass must not stop the loop; the next pass retries
            BACKGROUND_ERRORS.labels(task).inc()
            log.warning("background.failed", task=task, error=repr(exc))

    async def process_due_deletions(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        deleted = 0
        while True:
            due = await self.store.due_deletions(now, BATCH)
            if not due:
                return deleted
            marks: dict[str, int] = {}
            for hostname, claim_id in due:
                mark = int(time.time() * 1000)
                if await self.store.delete_due(hostname, claim_id, now, mark):
                    marks[hostname] = mark
                    GRACE_DELETIONS.inc()
            deleted += len(marks)
            await self.r.converge(marks)
            if len(due) < BATCH:
                return deleted

    async def sweep_dirty(self) -> int:
        older_than = int(time.time() * 1000) - 2 * self.r.coalescer.stale_plan_ms
        marks = await self.store.stale_marks(older_than, BATCH)
        if marks:
            SWEPT.inc(len(marks))
            log.info("background.sweeping", hostnames=len(marks))
            await self.r.converge(marks)
        return len(marks)

    async def sweep_held(self) -> int:
        older_than = int(time.time() * 1000) - self.r.coalescer.stale_plan_ms
        names = await self.r.coalescer.overdue(older_than, BATCH)
        targets = [t for t in map(Target.parse, names) if t is not None]
        if len(targets) < len(names):  # not a target name (written by hand?): it would be found again every pass
            await self.r.coalescer.forget_waiting([n for n in names if Target.parse(n) is None])
        if targets:
            SWEPT_TARGETS.inc(len(targets))
            log.info("background.sweeping_held", targets=len(targets))
            await self.r.touch(targets)
        return len(targets)

    async def detect_offline(self) -> int:
        cutoff = time.time() - self.r.settings.agent_offline_seconds
        count = 0
        for agent_id in await self.store.silent_agents(cutoff):
            # The set read above may be older than a contact that came meanwhile and, changing nothing else, moved
            # only the set: the write checks the set again.
            record = await update_agent(self.r.redis, self.r.keys, agent_id, went_silent(cutoff), silent_before=cutoff)
            if record is not None and record.status == "offline":
                count += 1
                OFFLINE.inc()
        await self.store.forget_silent(cutoff)
        return count

    async def prune_stopped(self, now: float | None = None) -> int:
        """Forget containers stopped longer than the retention period; returns how many entries were pruned."""
        at = time.time() if now is None else now
        grace = float(self.r.settings.grace_period_seconds)
        retention = max(grace, PRUNE_AFTER_SECONDS)
        pruned = 0
        for agent_id in await self.store.agents():
            pruned += await self.store.prune_agent(agent_id, lambda e: prunable(e, at, retention, grace))
        PRUNED.inc(pruned)
        return pruned

    async def drift_check(self) -> bool:
        if not await self.store.take_drift_lease(int(self.r.settings.drift_check_seconds * 900)):
            return False
        log.info("background.drift_check")
        await self.r.reconcile("all", verify=True, force=False)
        return True
