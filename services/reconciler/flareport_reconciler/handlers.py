"""The three stream handlers (events, intents, cf-results) as dispatch tables: a message's type names its use case.

The use cases are the spine's (``spine``: inventories, manual rules, assignments, Access groups, reconcile
requests, sync results) and the agents' (``agentcases``). A message of a type no table names is acknowledged and
left alone. Every use case is idempotent (messages arrive at least once, and in any order across replicas):
inventory events are merged by sequence number, agent records are updated under WATCH, claims are keyed by
source, and jobs are versioned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
import structlog

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
    ContainerDie,
    ContainerStart,
    ContainerStop,
    EventMessage,
    Heartbeat,
    IntentMessage,
    Inventory,
    KeyRolled,
    ManualRuleDeleted,
    ManualRuleUpserted,
    ReconcileRequested,
    TunnelEnsured,
    TunnelStatus,
)
from flareport_common.messages.cfresults import CfResultMessage, JobResult
from flareport_common.messages.intents import (
    AgentKeysRevoked,
    HostnameAssigned,
    RuleForceDeleted,
    RuleOverrideCleared,
    RuleOverrideSet,
    TunnelRestartRequested,
    TunnelsRefreshRequested,
)
from flareport_common.settings import ReconcilerSettings
from flareport_common.streams import Delivery
from flareport_reconciler.agentcases import AgentCases
from flareport_reconciler.forcedeletes import ForceDeletions
from flareport_reconciler.overrides import RuleOverrides
from flareport_reconciler.spine import Spine
from flareport_reconciler.tunnelcases import TunnelCases

UseCase = Callable[[Any], Awaitable[None]]


class Reconciler:
    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: ReconcilerSettings) -> None:
        self.spine = spine = Spine(redis, keys, settings)
        self.agents = agents = AgentCases(spine)
        forced = ForceDeletions(spine)
        overrides = RuleOverrides(spine)
        tunnels = TunnelCases(spine.emit)
        # For the failover healer (``failover``), which works on a replica as a whole.
        self.redis, self.keys, self.settings = redis, keys, settings
        self.reconcile = spine.reconcile
        self.send_command = spine.emit.command
        self.events: Mapping[type[EventMessage], UseCase] = {
            ContainerStart: spine.inventory_event,
            ContainerStop: spine.inventory_event,
            ContainerDie: spine.inventory_event,
            Inventory: spine.inventory_event,
            AgentRegistered: agents.registered,
            Heartbeat: agents.heartbeat,
            TunnelStatus: agents.tunnel_status,
            CommandAck: agents.command_ack,
        }
        self.intents: Mapping[type[IntentMessage], UseCase] = {
            AgentEnrolled: agents.enrolled,
            AgentPolicyChanged: agents.policy_changed,
            AgentRenamed: agents.renamed,
            AgentDecommissioned: agents.decommissioned,
            AgentRemoved: agents.decommissioned,
            AgentKeysRevoked: agents.keys_revoked,
            KeyRolled: agents.key_rolled,
            HostnameAssigned: spine.hostname_assigned,
            ManualRuleUpserted: spine.manual_rule_upserted,
            ManualRuleDeleted: spine.manual_rule_deleted,
            RuleForceDeleted: forced.rule_force_deleted,
            RuleOverrideSet: overrides.set,
            RuleOverrideCleared: overrides.cleared,
            AccessGroupUpserted: spine.access_group,
            AccessGroupDeleted: spine.access_group,
            ReconcileRequested: spine.reconcile_requested,
            TunnelRestartRequested: tunnels.restart_requested,
            TunnelsRefreshRequested: tunnels.refresh_requested,
        }
        self.results: Mapping[type[CfResultMessage], UseCase] = {
            TunnelEnsured: agents.tunnel_ensured,
            JobResult: self._job_result,
        }
        # A JobResult by the type of its job; every other job type is a target's sync (or its verification).
        self.job_results: Mapping[str, UseCase] = {"delete_tunnel": agents.tunnel_deleted}

    async def on_event(self, message: EventMessage, delivery: Delivery) -> None:
        with structlog.contextvars.bound_contextvars(agent_id=message.agent_id):
            await self._run(self.events.get(type(message)), message)

    async def on_intent(self, message: IntentMessage, delivery: Delivery) -> None:
        await self._run(self.intents.get(type(message)), message)

    async def on_result(self, message: CfResultMessage, delivery: Delivery) -> None:
        await self._run(self.results.get(type(message)), message)

    async def _job_result(self, message: JobResult) -> None:
        await self.job_results.get(message.job_type, self.spine.job_result)(message)

    @staticmethod
    async def _run(use_case: UseCase | None, message: object) -> None:
        if use_case is not None:
            await use_case(message)
