"""The agent use cases: registration and contact, enrolment and policy, key revocation and rotation,
decommission, and the results of tunnel jobs. Each one changes the agent's record (``agents``, pure, applied by
``records.update_agent``), sends what the agent or the dns-worker must do next (``emit``), and, when what the agent
may publish changed, marks its hostnames and converges them through the spine (``spine.converge``).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from flareport_common.messages import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentPolicyChanged,
    AgentRegistered,
    AgentRemoved,
    AgentRenamed,
    CommandAck,
    Decommission,
    DeleteTunnel,
    EnsureTunnel,
    Heartbeat,
    KeyRolled,
    RotateKey,
    StartTunnel,
    StopTunnel,
    TunnelEnsured,
    TunnelStatus,
)
from flareport_common.messages.cfresults import JobResult
from flareport_common.messages.intents import AgentKeysRevoked
from flareport_reconciler import agents
from flareport_reconciler.records import (
    forget_tunnel_owner,
    record_registration,
    set_tunnel_owner,
    tunnel_owner,
    update_agent,
)
from flareport_reconciler.spine import Spine
from flareport_reconciler.targets import Target

log = structlog.get_logger("flareport.reconciler")


class AgentCases:
    def __init__(self, spine: Spine) -> None:
        self.spine = spine
        self._redis = spine.redis
        self._keys = spine.keys
        self._emit = spine.emit

    # ---- events -----------------------------------------------------------------------------------------------

    async def registered(self, message: AgentRegistered) -> None:
        record = await record_registration(self._redis, self._keys, message, agents.registered(message))
        if agents.enrolment_lost(record, message):
            log.warning("reconciler.enrolment_restoring", tunnel_id=message.tunnel_id)
            job = EnsureTunnel(
                agent_id=message.agent_id,
                tunnel_id=message.tunnel_id,
                create=False,
                token_sha256=message.tunnel_token_sha256,
                correlation_id=message.correlation_id or message.id,
            )
            await self._emit.job(job)

    async def heartbeat(self, message: Heartbeat) -> None:
        await self._seen(
            message.agent_id,
            message.occurred_at,
            tunnel=message.tunnel,
            docker_reachable=message.docker_reachable,
            version=message.agent_version or None,
        )

    async def tunnel_status(self, message: TunnelStatus) -> None:
        await self._seen(message.agent_id, message.occurred_at, tunnel=message.tunnel)

    async def command_ack(self, message: CommandAck) -> None:
        await self._seen(message.agent_id, message.occurred_at)

    async def _seen(self, agent_id: str, at: datetime, *, version: str | None = None, **fields: object) -> None:
        await self.spine.record_contact(agent_id, at, agents.seen(agent_id, at, seq=None, version=version, **fields))

    # ---- intents ----------------------------------------------------------------------------------------------

    async def enrolled(self, message: AgentEnrolled) -> None:
        await update_agent(self._redis, self._keys, message.agent_id, agents.enrolled_by(message))
        job = EnsureTunnel(
            agent_id=message.agent_id,
            tunnel_name=message.tunnel_name or (None if message.tunnel_id else f"flareport-{message.agent_id}"),
            tunnel_id=message.tunnel_id,
            create=message.tunnel_id is None,
            correlation_id=message.correlation_id or message.id,
        )
        await self._emit.job(job)
        # The allow-lists may have changed what the agent may publish.
        await self.spine.converge(await self.spine.claims.mark_agent_hostnames(message.agent_id))

    async def policy_changed(self, message: AgentPolicyChanged) -> None:
        record = await update_agent(self._redis, self._keys, message.agent_id, agents.policy_changed(message))
        if record is not None and not agents.retired(record):
            # What the agent may publish changed: every hostname it claims is decided again.
            await self.spine.converge(await self.spine.claims.mark_agent_hostnames(message.agent_id))

    async def renamed(self, message: AgentRenamed) -> None:
        await update_agent(self._redis, self._keys, message.agent_id, agents.renamed(message.display_name))

    async def keys_revoked(self, message: AgentKeysRevoked) -> None:
        """Release every hostname of an agent whose last key was revoked. The record is marked first, so an
        event of the agent applied meanwhile (its transaction watches the record) retries and is ignored."""
        if await update_agent(self._redis, self._keys, message.agent_id, agents.revoked(message.occurred_at)) is None:
            return
        log.warning("reconciler.agent_keys_revoked", agent_id=message.agent_id)
        await self.spine.converge(await self.spine.claims.release_agent(message.agent_id))

    async def key_rolled(self, message: KeyRolled) -> None:
        ref = await self._emit.secret_ref(message.agent_id, message.secret_ref, message.new_key)
        await self._emit.command(message.agent_id, RotateKey(key_id=message.key_id, secret_ref=ref))

    async def decommissioned(self, message: AgentDecommissioned | AgentRemoved) -> None:
        agent_id = message.agent_id
        record = await update_agent(self._redis, self._keys, agent_id, agents.moved_by("decommission"))
        if record is None or record.status != "decommissioning":
            return
        await self._emit.command(agent_id, StopTunnel())
        await self._emit.command(agent_id, Decommission())
        await self.spine.converge(await self.spine.claims.withdraw_agent(agent_id))
        if record.tunnel_id and record.tunnel_created_by_flareport:
            await self._emit.job(DeleteTunnel(tunnel_id=record.tunnel_id, agent_id=agent_id))
        else:
            await update_agent(self._redis, self._keys, agent_id, agents.moved_by("released"))

    # ---- results ----------------------------------------------------------------------------------------------

    async def tunnel_ensured(self, message: TunnelEnsured) -> None:
        if not message.ok or not message.tunnel_id or not (message.token_ref or message.token):
            reason = message.error.message if message.error else "the tunnel could not be ensured"
            await update_agent(self._redis, self._keys, message.agent_id, agents.failed(reason))
            return
        record = await update_agent(self._redis, self._keys, message.agent_id, agents.tunnel_ensured(message))
        if record is None or agents.retired(record):
            return
        await set_tunnel_owner(self._redis, self._keys, message.tunnel_id, message.agent_id)
        ref = await self._emit.secret_ref(message.agent_id, message.token_ref, message.token)
        await self._emit.command(message.agent_id, StartTunnel(tunnel_id=message.tunnel_id, secret_ref=ref))
        # Every hostname of the agent now has a tunnel: its zones and its tunnel need planning.
        await self.spine.converge(await self.spine.claims.mark_agent_hostnames(message.agent_id))

    async def tunnel_deleted(self, message: JobResult) -> None:
        target = Target.parse(message.target)
        if target is None or target.kind != "tunnel":
            return
        agent_id = await tunnel_owner(self._redis, self._keys, target.name)
        if agent_id is None:
            return
        if not message.ok:
            reason = "; ".join(e.message for e in message.errors) or "tunnel deletion failed"
            await update_agent(self._redis, self._keys, agent_id, agents.failed(reason))
            return
        await update_agent(self._redis, self._keys, agent_id, agents.moved_by("released"))
        await forget_tunnel_owner(self._redis, self._keys, target.name)
