"""Handlers of the three streams the reconciler consumes: events (agents), intents (admins), cf-results.

Every handler is idempotent (messages arrive at least once, and in any order across replicas): inventory
events are merged by sequence number, agent records are updated under WATCH, claims are keyed by source, and
jobs are versioned. Agent commands go to the agent's command stream followed by a PUBLISH of the agent id on
the notifications channel, which wakes the API's long-poll for that agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter

from flareport_common.keys import Keys
from flareport_common.messages import (
    AccessGroupDeleted,
    AccessGroupUpserted,
    AgentDecommissioned,
    AgentEnrolled,
    AgentPolicyChanged,
    AgentRegistered,
    AgentRemoved,
    AgentRenamed,
    CommandAck,
    CommandMessage,
    ContainerDie,
    ContainerStart,
    ContainerStop,
    Decommission,
    DeleteTunnel,
    EnsureTunnel,
    EventMessage,
    Heartbeat,
    IntentMessage,
    Inventory,
    KeyRolled,
    ManualRuleDeleted,
    ManualRuleUpserted,
    ReconcileRequested,
    RotateKey,
    StartTunnel,
    StopTunnel,
    TunnelEnsured,
    TunnelStatus,
    VerifyTarget,
)
from flareport_common.messages.base import new_id
from flareport_common.messages.cfresults import CfResultMessage, JobResult
from flareport_common.messages.intents import AgentKeysRevoked, HostnameAssigned
from flareport_common.parcels import stash
from flareport_common.readmodel import AgentRecord
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import Delivery, Producer
from flareport_common.streams.codec import encode
from flareport_reconciler import agents
from flareport_reconciler.agentquota import Limits
from flareport_reconciler.batching import AgentBatches
from flareport_reconciler.claims import Claims
from flareport_reconciler.coalesce import Coalescer
from flareport_reconciler.inventory import InventoryEvent
from flareport_reconciler.planner import Planner
from flareport_reconciler.records import apply_result, text, update_agent
from flareport_reconciler.targets import Target, parse_all

REFRESH_CHUNK = 500  # hostnames resolved per refresh when all of them must be
log = structlog.get_logger("flareport.reconciler")

COMMANDS = Counter("flareport_reconciler_commands_total", "Commands sent to agents, by type.", ["type"])
IGNORED = Counter("flareport_reconciler_ignored_events_total", "Events ignored, by reason.", ["reason"])
COMMAND_STREAM_MAXLEN = 1_000


class Reconciler:
    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.coalescer = Coalescer(
            redis,
            keys,
            stale_plan_ms=int(settings.claim_idle_seconds * 1000),
            stale_job_ms=settings.job_timeout_seconds * 1000,
        )
        self.planner = Planner(
            redis,
            keys,
            self.coalescer,
            hold_seconds=settings.recovery_hold_seconds,
            owner_email=settings.access_owner_email,
        )
        limits = Limits(containers=settings.agent_max_containers, hostnames=settings.agent_max_hostnames)
        self.claims = Claims(redis, keys, self.planner, grace_seconds=settings.grace_period_seconds, limits=limits)
        self.producer = Producer(redis, metrics_label="cf-jobs")
        self.batches = AgentBatches(self._apply_inventory)

    # ---- events ------------------------------------------------------------------------------------------------

    async def on_event(self, message: EventMessage, delivery: Delivery) -> None:
        with structlog.contextvars.bound_contextvars(agent_id=message.agent_id):
            if isinstance(message, ContainerStart | ContainerStop | ContainerDie | Inventory):
                await self.batches.submit(message.agent_id, message)
            elif isinstance(message, AgentRegistered):
                await self._registered(message)
            elif isinstance(message, Heartbeat):
                await self._seen(
                    message.agent_id,
                    message.occurred_at,
                    tunnel=message.tunnel,
                    docker_reachable=message.docker_reachable,
                    version=message.agent_version or None,
                )
            elif isinstance(message, TunnelStatus):
                await self._seen(message.agent_id, message.occurred_at, tunnel=message.tunnel)
            elif isinstance(message, CommandAck):
                await self._seen(message.agent_id, message.occurred_at)

    async def _apply_inventory(self, agent_id: str, events: Sequence[InventoryEvent]) -> None:
        """A batch of one agent's inventory events (see ``batching``)."""
        # The inventory transaction reads the agent record too (retired? label errors?): one read for
        # everything, and contact is recorded afterwards only when worth a write.
        applied = await self.claims.apply_inventory(agent_id, events)
        record = applied.record
        newest = max(event.occurred_at for event in events)
        if record is None or agents.contact_worth_recording(record, newest):
            await self._seen(agent_id, newest, seq=max(event.seq for event in events))
        if applied.retired:
            IGNORED.labels("agent_retired").inc(len(events))
            return
        if not applied.marks:
            IGNORED.labels("stale_or_duplicate").inc(len(events))
        await self.claims.refresh(applied.marks, applied.read, record)

    async def _registered(self, message: AgentRegistered) -> None:
        record = await update_agent(self.redis, self.keys, message.agent_id, agents.registered(message))
        await self.redis.zadd(self.keys.agents_last_seen, {message.agent_id: message.occurred_at.timestamp()})
        if agents.enrolment_lost(record, message):
            log.warning("reconciler.enrolment_restoring", tunnel_id=message.tunnel_id)
            job = EnsureTunnel(
                agent_id=message.agent_id,
                tunnel_id=message.tunnel_id,
                create=False,
                token_sha256=message.tunnel_token_sha256,
                correlation_id=message.correlation_id or message.id,
            )
            await self.producer.send(self.keys.cf_jobs, job)

    async def _seen(
        self,
        agent_id: str,
        at: datetime,
        *,
        seq: int | None = None,
        version: str | None = None,
        **fields: object,
    ) -> AgentRecord | None:
        """Record contact from the agent (``agents.seen``)."""
        change = agents.seen(agent_id, at, seq=seq, version=version, **fields)
        record = await update_agent(self.redis, self.keys, agent_id, change)
        await self.redis.zadd(self.keys.agents_last_seen, {agent_id: at.timestamp()}, gt=True)
        return record

    # ---- intents -------------------------------------------------------------------------------------------

    async def on_intent(self, message: IntentMessage, delivery: Delivery) -> None:
        if isinstance(message, AgentEnrolled):
            await self._enrolled(message)
        elif isinstance(message, AgentPolicyChanged):
            await self._policy_changed(message)
        elif isinstance(message, AgentRenamed):
            await update_agent(self.redis, self.keys, message.agent_id, agents.renamed(message.display_name))
        elif isinstance(message, AgentDecommissioned | AgentRemoved):
            await self._decommission(message.agent_id)
        elif isinstance(message, AgentKeysRevoked):
            await self._keys_revoked(message)
        elif isinstance(message, HostnameAssigned):
            await self.claims.refresh(await self.claims.assign(message.hostname, message.owner))
        elif isinstance(message, KeyRolled):
            ref = await self._secret_ref(message.agent_id, message.secret_ref, message.new_key)
            await self.send_command(message.agent_id, RotateKey(key_id=message.key_id, secret_ref=ref))
        elif isinstance(message, ManualRuleUpserted):
            marks = await self.claims.upsert_manual(message.rule_id, message.rule, message.agent_id, message.tunnel_id)
            await self.claims.refresh(marks)
        elif isinstance(message, ManualRuleDeleted):
            await self.claims.refresh(await self.claims.delete_manual(message.rule_id))
        elif isinstance(message, AccessGroupUpserted | AccessGroupDeleted):
            await self._access_group(message)
        elif isinstance(message, ReconcileRequested):
            await self.reconcile(message.scope, verify=message.verify)

    async def _enrolled(self, message: AgentEnrolled) -> None:
        await update_agent(self.redis, self.keys, message.agent_id, agents.enrolled_by(message))
        job = EnsureTunnel(
            agent_id=message.agent_id,
            tunnel_name=message.tunnel_name or (None if message.tunnel_id else f"flareport-{message.agent_id}"),
            tunnel_id=message.tunnel_id,
            create=message.tunnel_id is None,
            correlation_id=message.correlation_id or message.id,
        )
        await self.producer.send(self.keys.cf_jobs, job)
        # The allow-lists may have changed what the agent may publish.
        await self.claims.refresh(await self.claims.mark_agent_hostnames(message.agent_id))

    async def _policy_changed(self, message: AgentPolicyChanged) -> None:
        change = agents.policy_changed(message)
        record = await update_agent(self.redis, self.keys, message.agent_id, change)
        if record is not None and not agents.retired(record):
            # What the agent may publish changed: every hostname it claims is decided again.
            await self.claims.refresh(await self.claims.mark_agent_hostnames(message.agent_id))

    async def _keys_revoked(self, message: AgentKeysRevoked) -> None:
        """Release every hostname of an agent whose last key was revoked. The record is marked first, so an
        event of the agent applied meanwhile (its transaction watches the record) retries and is ignored."""

        change = agents.revoked(message.occurred_at)
        if await update_agent(self.redis, self.keys, message.agent_id, change) is None:
            return
        log.warning("reconciler.agent_keys_revoked", agent_id=message.agent_id)
        await self.claims.refresh(await self.claims.release_agent(message.agent_id))

    async def _decommission(self, agent_id: str) -> None:
        change = agents.moved_by("decommission")
        record = await update_agent(self.redis, self.keys, agent_id, change)
        if record is None or record.status != "decommissioning":
            return
        await self.send_command(agent_id, StopTunnel())
        await self.send_command(agent_id, Decommission())
        await self.claims.refresh(await self.claims.withdraw_agent(agent_id))
        if record.tunnel_id and record.tunnel_created_by_flareport:
            await self.producer.send(self.keys.cf_jobs, DeleteTunnel(tunnel_id=record.tunnel_id, agent_id=agent_id))
        else:
            await update_agent(self.redis, self.keys, agent_id, agents.moved_by("released"))

    async def _access_group(self, message: AccessGroupUpserted | AccessGroupDeleted) -> None:
        if isinstance(message, AccessGroupUpserted):
            policy = msgspec.to_builtins(message)
            for name in ("type", "id", "occurred_at", "schema_version", "correlation_id"):
                policy.pop(name, None)
            await self.redis.hset(self.keys.access_groups, message.group_id, msgspec.json.encode(policy))
        else:
            await self.redis.hdel(self.keys.access_groups, message.group_id)
        # A group decides whether its rules are published at all (an unknown group holds a hostname back), so
        # every hostname is resolved again and every target planned; an unchanged one sends no job.
        await self.reconcile("all", verify=False, force=False)

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
                await self.claims.refresh({n: marks[n] for n in names[start : start + REFRESH_CHUNK]})
            targets = parse_all(text(t) for t in await self.redis.smembers(self.keys.targets_index))
        else:
            one = Target.parse(scope)
            if one is None:
                IGNORED.labels("unknown_target").inc()
                log.warning("reconciler.unknown_target", target=scope)
                return
            targets = [one]
        await self.planner.touch(targets, force=force)
        if verify:
            await self.producer.send_many(self.keys.cf_jobs, (VerifyTarget(target=str(t)) for t in targets))

    # ---- results -------------------------------------------------------------------------------------------

    async def on_result(self, message: CfResultMessage, delivery: Delivery) -> None:
        if isinstance(message, TunnelEnsured):
            await self._tunnel_ensured(message)
            return
        if message.job_type == "delete_tunnel":
            await self._tunnel_deleted(message)
            return
        if message.job_type == "verify_target":
            if message.errors or message.drift_repaired:
                log.warning("reconciler.drift", target=message.target, errors=len(message.errors))
            return
        token = new_id()
        outcome = await self.coalescer.result(
            message.target, message.job_id, message.ok, token, int(message.occurred_at.timestamp() * 1000)
        )
        if not outcome.current:
            return
        members = msgspec.json.decode(outcome.members, type=list[str]) if outcome.members else []
        await apply_result(self.redis, self.keys, message, members)
        target = Target.parse(message.target)
        if outcome.plan_again and target is not None:  # a result names the target of a job this service sent
            await self.planner.plan(target, token)

    async def _tunnel_ensured(self, message: TunnelEnsured) -> None:
        if not message.ok or not message.tunnel_id or not (message.token_ref or message.token):
            reason = message.error.message if message.error else "the tunnel could not be ensured"
            await update_agent(self.redis, self.keys, message.agent_id, agents.failed(reason))
            return

        change = agents.tunnel_ensured(message)
        record = await update_agent(self.redis, self.keys, message.agent_id, change)
        if record is None or agents.retired(record):
            return
        await self.redis.hset(self.keys.tunnel_agents, message.tunnel_id, message.agent_id)
        ref = await self._secret_ref(message.agent_id, message.token_ref, message.token)
        await self.send_command(message.agent_id, StartTunnel(tunnel_id=message.tunnel_id, secret_ref=ref))
        # Every hostname of the agent now has a tunnel: its zones and its tunnel need planning.
        await self.claims.refresh(await self.claims.mark_agent_hostnames(message.agent_id))

    async def _tunnel_deleted(self, message: JobResult) -> None:
        target = Target.parse(message.target)
        if target is None or target.kind != "tunnel":
            return
        tunnel_id = target.name
        agent = await self.redis.hget(self.keys.tunnel_agents, tunnel_id)
        if agent is None:
            return
        agent_id = text(agent)
        if not message.ok:
            reason = "; ".join(e.message for e in message.errors) or "tunnel deletion failed"
            await update_agent(self.redis, self.keys, agent_id, agents.failed(reason))
            return
        await update_agent(self.redis, self.keys, agent_id, agents.moved_by("released"))
        await self.redis.hdel(self.keys.tunnel_agents, tunnel_id)

    # ---- commands ------------------------------------------------------------------------------------------

    async def _secret_ref(self, agent_id: str, ref: str | None, legacy: str | None) -> str:
        """Where the agent's secret waits (``flareport_common.parcels``). A message from a producer of an older
        release carries the secret itself: it is moved out of the stream into the agent's own key here."""
        return ref or await stash(self.redis, self.keys, agent_id, legacy or "")

    async def send_command(self, agent_id: str, command: CommandMessage) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(
            self.keys.agent_commands(agent_id),
            encode(command),  # type: ignore[arg-type]
            maxlen=COMMAND_STREAM_MAXLEN,
            approximate=True,
        )
        pipe.publish(self.keys.command_notifications, agent_id)
        await pipe.execute()
        COMMANDS.labels(type(command).__name__).inc()
        log.info("reconciler.command_sent", agent_id=agent_id, command=type(command).__name__)
