"""The reconciler's spine: each use case, from a message to Cloudflare jobs, as one short pipeline.

Every change to what is published walks the same modules, each once, in this order::

    source      claims.py     the agent's inventory, a manual rule, an admin's assignment, written with dirty marks
    refresh     refresh.py    the marked hostnames resolved (resolution.py) into rule documents (rules.py) and the
                              targets whose part changed (targets.py), written under a compare-and-set
    touch       coalesce.py   each such target marked: held by this replica (planned now, or at the end of its
                              window), or folded into the job in flight
    plan        planner.py    a held target's hostnames read and resolved (resolution.py), its job built (jobs.py)
    commit      coalesce.py   the job XADDed to cf-jobs if its version changed
    finish      refresh.py    the hostnames' dirty marks cleared, where nothing changed meanwhile

and a job's result walks back: ``coalesce.result`` (the job no longer in flight) -> the statuses of the rules it
carried (``records.apply_result``, ``rules.result_change``) -> plan the target again if a change waited.

A hostname is resolved twice on the way, on purpose: the refresh resolves it alone (its documents, and which
targets its change touches), and the plan resolves it again with every other hostname of the target, from
claims read afresh, because a job must carry the target's whole state as it is when the job is committed, and
other replicas change claims in between (the coalescing's pending flag then brings one more plan).

Nothing here talks to Redis itself: the steps are the store modules' (``claims``, ``refresh``, ``coalesce``,
``planner``, ``records``, ``accessgroups``, ``emit``; ``upkeep`` for the background loop) and the decisions the
pure modules'. Agent use cases
(registration, enrolment, decommission, ...) are in ``agentcases``; they end in ``converge`` too. Why two steps
with marks in between, and what a replica killed between any two of them leaves behind: docs/reconciler.md,
"Crash safety".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime

import msgspec
import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter

from flareport_common.keys import Keys
from flareport_common.messages import (
    AccessGroupDeleted,
    AccessGroupUpserted,
    ContainerDie,
    ContainerStart,
    ContainerStop,
    Inventory,
    ManualRuleDeleted,
    ManualRuleUpserted,
    ReconcileRequested,
)
from flareport_common.messages.base import new_id
from flareport_common.messages.cfresults import JobResult
from flareport_common.messages.intents import HostnameAssigned
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams.codec import FIELD, encode
from flareport_reconciler import agents, jobtrace
from flareport_reconciler.accessgroups import AccessGroups
from flareport_reconciler.agentquota import Limits
from flareport_reconciler.batching import AgentBatches
from flareport_reconciler.budget import Budget
from flareport_reconciler.claims import Claims
from flareport_reconciler.coalesce import Coalescer, Committed, Run, Window
from flareport_reconciler.contacts import RecentContacts
from flareport_reconciler.emit import Emitter
from flareport_reconciler.inventory import InventoryEvent
from flareport_reconciler.planner import Planner, now_ms
from flareport_reconciler.records import apply_result, record_contact
from flareport_reconciler.refresh import HostnameRead, Prefetched, Refresher
from flareport_reconciler.resolution import AccessCatalog
from flareport_reconciler.targets import Target

log = structlog.get_logger("flareport.reconciler")

IGNORED = Counter("flareport_reconciler_ignored_events_total", "Events ignored, by reason.", ["reason"])
JOBS = Counter("flareport_reconciler_jobs_total", "Cloudflare jobs emitted, by job type.", ["type"])
PLANS = Counter("flareport_reconciler_plans_total", "Target plans computed, by outcome.", ["outcome"])
HELD = Counter("flareport_reconciler_plans_held_total", "Target plans held for the end of the target's window.")
HELD_FAILED = Counter(
    "flareport_reconciler_held_plan_failures_total", "Plans held for a window that failed (the sweeper retries them)."
)

REFRESH_CHUNK = 500  # hostnames resolved per refresh when all of them must be
_members_encoder = msgspec.json.Encoder()


class Spine:
    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings) -> None:
        self.settings = settings
        self.coalescer = Coalescer(
            redis,
            keys,
            stale_plan_ms=int(settings.claim_idle_seconds * 1000),
            stale_job_ms=settings.job_timeout_seconds * 1000,
            window=Window(
                base_ms=settings.coalesce_window_ms,
                max_ms=settings.coalesce_max_window_ms,
                burst_weight=settings.coalesce_burst_hostnames,
            ),
        )
        self.budget = Budget(redis, keys)
        # Plans held for their target's window, each with the event that ends its wait early (``flush``).
        self._held: dict[asyncio.Task[None], asyncio.Event] = {}
        self.access = AccessGroups(redis, keys, owner_email=settings.access_owner_email)
        self.planner = Planner(redis, keys, self.access, hold_seconds=settings.recovery_hold_seconds)
        limits = Limits(containers=settings.agent_max_containers, hostnames=settings.agent_max_hostnames)
        self.claims = Claims(redis, keys, grace_seconds=settings.grace_period_seconds, limits=limits)
        self.refresher = Refresher(redis, keys, self.access)
        self.emit = Emitter(redis, keys)
        self.batches = AgentBatches(self.inventory)
        self.contacts = RecentContacts()
        self.redis = redis
        self.keys = keys

    # ---- the pipeline, from marked hostnames to committed jobs --------------------------------------------------

    async def converge(
        self,
        marks: Mapping[str, int],
        read: Mapping[str, HostnameRead] | None = None,
        record: AgentRecord | None = None,
        prefetched: Prefetched | None = None,
        run: Run = Run.NONE,
    ) -> None:
        """Refresh the marked hostnames, touch the targets whose part changed, then finish (clear the marks).
        ``read``, ``record`` and ``prefetched`` are what the source step already read in its transaction; ``run``
        what the change's agent said of the changes still to come."""
        refreshed = await self.refresher.refresh(marks, read, record, prefetched)
        if refreshed is None:
            return
        await self.touch(refreshed.touch, force=refreshed.force, weight=len(marks), catalog=refreshed.catalog, run=run)
        await self.refresher.finish(refreshed)

    async def touch(
        self,
        targets: Iterable[Target],
        *,
        force: bool | AbstractSet[Target] = False,
        weight: int = 1,
        catalog: AccessCatalog | None = None,
        run: Run = Run.NONE,
    ) -> None:
        """Targets a change of ``weight`` hostnames may affect: plan each at once, at the end of its window, or
        fold the change into its next job. A forced target (``force=True``: all of them) taken sends a job even
        if its desired version is unchanged. ``catalog``: the Access catalog the change was just resolved with,
        for the plans made now (a change of it reconciles everything again, so one read milliseconds ago is as
        good as a new one)."""
        ordered = sorted(set(targets))
        if not ordered:
            return
        tokens = [new_id() for _ in ordered]
        forced = [force if isinstance(force, bool) else t in force for t in ordered]
        pressure = self.budget.pressure()
        delays = await self.coalescer.mark_many(
            [str(t) for t in ordered], tokens, now_ms(), forced, weight=weight, pressure=pressure, run=run
        )
        for target, token, delay in zip(ordered, tokens, delays, strict=True):
            if delay is None:
                PLANS.labels("folded").inc()
            elif delay > 0:
                self._plan_later(target, token, delay)
            else:
                # One after the other: planned side by side, the second plan's reads delay the first job (measured:
                # the first job later by about 1 ms, the second no sooner).
                await self.plan(target, token, catalog)

    def _plan_later(self, target: Target, token: str, delay_ms: int) -> None:
        """Plan a held target when its window ends, in the background: the message that brought the change is
        done (the target's state in Redis says it is held; should this replica die, the sweeper takes it over).
        The task runs outside the batch's context: its job carries no trace (``jobtrace``)."""
        HELD.inc()
        wake = asyncio.Event()
        task = asyncio.create_task(
            self._held_plan(target, token, delay_ms, wake),
            name=f"plan-later:{target}",
            context=contextvars.Context(),
        )
        self._held[task] = wake
        task.add_done_callback(self._held.pop)

    async def _held_plan(self, target: Target, token: str, delay_ms: int, wake: asyncio.Event) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay_ms / 1000)
                # A stopping replica (``flush``) plans now; otherwise the hold lasts while changes keep arriving.
                extended = await self.coalescer.begin(
                    str(target), token, now_ms(), pressure=self.budget.pressure(), extend=not wake.is_set()
                )
                if extended is None:
                    PLANS.labels("lost").inc()
                    return
                if extended == 0:
                    await self.plan(target, token)
                    return
                delay_ms = extended
        except Exception as exc:  # Redis away: the target stays held, and the sweeper plans it once it is stale
            HELD_FAILED.inc()
            log.warning("planner.held_plan_failed", target=str(target), error=repr(exc))

    async def flush(self) -> None:
        """Plan every target held for a window now (a replica stopping): nothing waits for the sweeper."""
        held = list(self._held.items())
        for _, wake in held:
            wake.set()
        if held:
            await asyncio.gather(*(task for task, _ in held), return_exceptions=True)

    async def held_plans_done(self) -> None:
        """Wait until the plans held right now ran (tests and the stop path use it; it never ends them early)."""
        tasks = list(self._held)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def plan(self, target: Target, token: str, catalog: AccessCatalog | None = None) -> None:
        """Plan a target this caller holds (``token``) and commit its job, until no change is pending."""
        while True:
            built = await self.planner.build(target, catalog)
            catalog = None  # a pending change planned again reads it again
            job = jobtrace.attach(built.job) if built.job is not None else None
            payload = encode(job)[FIELD] if job is not None else b""
            job_id = job.id if job is not None else ""
            members = _members_encoder.encode(built.members)
            code = await self.coalescer.commit(str(target), token, job_id, built.version, payload, members, now_ms())
            if code == Committed.SENT and job is not None:
                jobtrace.committed(job)
                JOBS.labels(type(job).__name__).inc()
                PLANS.labels("sent").inc()
                log.debug("planner.job_sent", target=str(target), version=built.version, job_id=job_id)
            elif code != Committed.AGAIN:
                PLANS.labels("unchanged" if code == Committed.UNCHANGED else "lost").inc()
            if code != Committed.AGAIN:
                return

    # ---- sources --------------------------------------------------------------------------------------------------

    async def inventory_event(self, message: ContainerStart | ContainerStop | ContainerDie | Inventory) -> None:
        """An agent's inventory event, applied with the others of its agent that arrive together (``batching``)."""
        await self.batches.submit(message.agent_id, jobtrace.read(message))

    async def inventory(self, agent_id: str, events: Sequence[InventoryEvent]) -> None:
        """A batch of one agent's inventory events: applied, contact recorded, converged; the jobs committed on the
        way carry the batch's oldest trace (``jobtrace``)."""
        with jobtrace.planning(events):
            await self._inventory(agent_id, events)

    async def _inventory(self, agent_id: str, events: Sequence[InventoryEvent]) -> None:
        # The inventory transaction reads the agent record too (retired? label errors?): one read for
        # everything, and contact is recorded afterwards only when worth a write.
        applied = await self.claims.apply_inventory(agent_id, events)
        record = applied.record
        newest = max(event.occurred_at for event in events)
        seen = None
        if record is None or agents.contact_worth_recording(record, newest, self.contacts.get(agent_id)):
            seen = agents.seen(agent_id, newest, seq=max(event.seq for event in events))
        if seen is not None and (record is None or applied.retired):
            # A record the contact creates is one the plan must see; a retired agent's events stop here.
            await self.record_contact(agent_id, newest, seen)
            seen = None
        if applied.retired:
            IGNORED.labels("agent_retired").inc(len(events))
            return
        if not applied.marks:
            IGNORED.labels("stale_or_duplicate").inc(len(events))
        await self.converge(applied.marks, applied.read, record, applied.prefetched, run_of(events))
        if seen is not None:
            # After the plan, off the way of the change to its job: contact moves the agent's last-seen time and
            # brings an offline agent back, and resolution reads neither (``agents.view_of``).
            await self.record_contact(agent_id, newest, seen)

    async def record_contact(self, agent_id: str, at: datetime, change: agents.AgentUpdate) -> AgentRecord | None:
        """``records.record_contact``, remembered (``contacts``) so the burst it belongs to records it once."""
        record = await record_contact(self.redis, self.keys, agent_id, at, change)
        self.contacts.put(agent_id, at)
        return record

    async def manual_rule_upserted(self, message: ManualRuleUpserted) -> None:
        marks = await self.claims.upsert_manual(message.rule_id, message.rule, message.agent_id, message.tunnel_id)
        await self.converge(marks)

    async def manual_rule_deleted(self, message: ManualRuleDeleted) -> None:
        await self.converge(await self.claims.delete_manual(message.rule_id))

    async def hostname_assigned(self, message: HostnameAssigned) -> None:
        await self.converge(await self.claims.assign(message.hostname, message.owner))

    async def access_group(self, message: AccessGroupUpserted | AccessGroupDeleted) -> None:
        if isinstance(message, AccessGroupUpserted):
            await self.access.put(message)
        else:
            await self.access.delete(message.group_id)
        # A group decides whether its rules are published at all (an unknown group holds a hostname back), so
        # every hostname is resolved again and every target planned; an unchanged one sends no job.
        await self.reconcile("all", verify=False, force=False)

    async def reconcile_requested(self, message: ReconcileRequested) -> None:
        await self.reconcile(message.scope, verify=message.verify)

    async def reconcile(self, scope: str, *, verify: bool, force: bool = True) -> None:
        """Plan targets again (``force``: forgetting their last version) and, if asked, have the worker verify
        them. The drift check does not force: unchanged targets send no job, ``verify_target`` finds drift.
        """
        if scope == "all":
            # Resolve every hostname again first: what rules resolve to (Access groups, the account facts) may
            # have changed without any claim changing.
            marks = await self.claims.mark_all_hostnames()
            names = sorted(marks)
            for start in range(0, len(names), REFRESH_CHUNK):
                await self.converge({n: marks[n] for n in names[start : start + REFRESH_CHUNK]})
            targets = await self.planner.known_targets()
        else:
            one = Target.parse(scope)
            if one is None:
                IGNORED.labels("unknown_target").inc()
                log.warning("reconciler.unknown_target", target=scope)
                return
            targets = [one]
        await self.touch(targets, force=force)
        if verify:
            await self.emit.verify(targets)

    # ---- results --------------------------------------------------------------------------------------------------

    async def job_result(self, message: JobResult) -> None:
        """A sync job's result: the job leaves the target, the rules it carried get their statuses, and a change
        that waited meanwhile is planned now."""
        if message.job_type == "verify_target":
            if message.errors or message.drift_repaired:
                log.warning("reconciler.drift", target=message.target, errors=len(message.errors))
            return
        token = new_id()
        occurred_ms = int(message.occurred_at.timestamp() * 1000)
        pressure = self.budget.pressure()
        outcome = await self.coalescer.result(
            message.target,
            message.job_id,
            message.ok,
            token,
            occurred_ms,
            pressure=pressure,
            writes=message.writes,
            cloudflare_ms=message.cloudflare_ms,
        )
        if not outcome.current:
            return
        members = msgspec.json.decode(outcome.members, type=list[str]) if outcome.members else []
        await apply_result(self.redis, self.keys, message, members)
        target = Target.parse(message.target)
        if not outcome.plan_again or target is None:  # a result names the target of a job this service sent
            return
        if outcome.delay_ms > 0:
            self._plan_later(target, token, outcome.delay_ms)
        else:
            await self.plan(target, token)


def run_of(events: Sequence[InventoryEvent]) -> Run:
    """What the batch's newest event says of the agent's changes still to come (``EventBatch.starting``)."""
    starting = max(events, key=lambda event: event.seq).starting
    if starting is None:
        return Run.NONE
    return Run.MORE if starting > 1 else Run.NEXT if starting == 1 else Run.ENDED
