"""The plan step: a held target's Cloudflare job, built from the target's hostnames and their claims.

This is the I/O edge around ``resolution`` and ``targets``: it reads only the hostnames indexed under the target
(a zone's hostnames, a tunnel's agent's hostnames), never the whole state; the spine hands the job it builds to
``Coalescer.commit``, which sends it only if its version differs from the last one sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.replies import text
from flareport_reconciler.accessgroups import AccessGroups
from flareport_reconciler.claims import read_claims
from flareport_reconciler.jobs import Built, job_for, pruning
from flareport_reconciler.records import agent_views, views_of
from flareport_reconciler.resolution import AccessCatalog, AgentView, Decision, resolve_hostname
from flareport_reconciler.scripts import forget_unclaimed
from flareport_reconciler.targets import (
    Target,
    parse_all,
)

# How many tunnels' agents a replica remembers (``Planner._tunnel_agent``): one each for thousands of hosts.
TUNNEL_GUESSES = 10_000


def now_ms() -> int:
    return int(time.time() * 1000)


class Planner:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        access: AccessGroups,
        *,
        hold_seconds: float = 600,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._access = access
        self._hold_seconds = hold_seconds
        # tunnel id -> the agent ``tunnel_agents`` named at its last plan. A guess, checked in the same round trip
        # that reads it: the mapping changes only when a tunnel moves, so the agent's record and hostnames come
        # with the first reads instead of one round trip after them.
        self._tunnel_agent: dict[str, str] = {}

    async def known_targets(self) -> list[Target]:
        """Every target a job was ever sent for (``coalesce`` indexes them as it commits)."""
        return parse_all(text(t) for t in await self._redis.smembers(self._keys.targets_index))

    async def decisions_for(
        self,
        hostnames: Iterable[str],
        *,
        index_keys: Sequence[str] = (),
        catalog: AccessCatalog | None = None,
        known: Mapping[str, AgentView | None] | None = None,
    ) -> list[Decision]:
        """Resolve ``hostnames`` (with ``catalog`` when the caller has a current one); those without any claim
        left are removed from ``index_keys`` (the sets they were found in), atomically and only if still
        unclaimed, so indexes do not grow forever. ``known``: agents whose records the caller read already (None:
        no record), so that only the others are read.
        """
        names = sorted(set(hostnames))
        if not names:
            return []
        per_host = await read_claims(self._redis, self._keys, names)
        unclaimed = [name for name, host in zip(names, per_host, strict=True) if not host.claims and not host.assigned]
        if unclaimed and index_keys:
            await forget_unclaimed(self._redis, self._keys, index_keys, unclaimed)
        known = known or {}
        wanted = [c.agent_id for host in per_host for c in host.claims if c.agent_id and c.agent_id not in known]
        if catalog is None:
            # Independent reads, sent together (on two of the pool's connections): one wait instead of two.
            agents, current = await asyncio.gather(agent_views(self._redis, self._keys, wanted), self._access.catalog())
        else:
            agents, current = await agent_views(self._redis, self._keys, wanted), catalog
        agents.update((agent_id, view) for agent_id, view in known.items() if view is not None)
        decisions: list[Decision] = []
        for host in per_host:
            decisions.extend(resolve_hostname(host.effective, agents, assigned=host.assigned, catalog=current))
        return decisions

    async def build(self, target: Target, catalog: AccessCatalog | None = None) -> Built:
        index = self._keys.target_hostnames(str(target))
        reads = self._redis.pipeline(transaction=False)
        reads.hget(self._keys.target_state(str(target)), "version")
        reads.hget(self._keys.tunnel_agents, target.name)
        reads.get(self._keys.keys_recovered_at)
        if target.kind == "zone":  # a zone's hostnames need nothing read before: in the same round trip
            reads.smembers(index)
        guess = self._tunnel_agent.get(target.name) if target.kind == "tunnel" else None
        if guess is not None:
            self._queue_tunnel_reads(reads, index, guess)
        stored, agent, recovered_at, *members = await reads.execute()
        prune = pruning(recovered_at, self._hold_seconds, time.time())
        if target.kind == "tunnel":
            agent_id = None if agent is None else text(agent)
            self._remember(target.name, agent_id)
            if guess is None or agent_id != guess:  # no guess, or the tunnel moved: read what its agent is now
                more = self._redis.pipeline(transaction=False)
                self._queue_tunnel_reads(more, index, agent_id)
                members = await more.execute()
            sources = [index] if agent_id is None else [index, self._keys.agent_hostnames(agent_id)]
            *record, listed = members
            known = {agent_id: views_of(record).get(agent_id)} if agent_id is not None else {}
            hostnames = {text(h) for h in listed}
            decisions = await self.decisions_for(hostnames, index_keys=sources, catalog=catalog, known=known)
        elif target.kind == "zone":
            hostnames = {text(h) for h in members[0]}
            decisions = await self.decisions_for(hostnames, index_keys=[index], catalog=catalog)
        else:  # an Access app: one rule's, of one hostname
            decisions = await self.decisions_for([target.hostname], catalog=catalog)
        return job_for(target, decisions, last_version=None if stored is None else text(stored), prune=prune)

    def _queue_tunnel_reads(self, pipe: aioredis.client.Pipeline, index: str, agent_id: str | None) -> None:
        """A tunnel's hostnames (its index and its agent's) and its agent's record: the agent claims (nearly) all
        of them, so its record comes with them rather than after their claims."""
        if agent_id is None:
            pipe.sunion([index])
            return
        pipe.get(self._keys.agent(agent_id))
        pipe.sunion([index, self._keys.agent_hostnames(agent_id)])

    def _remember(self, tunnel: str, agent_id: str | None) -> None:
        if agent_id is None:
            self._tunnel_agent.pop(tunnel, None)
            return
        if tunnel not in self._tunnel_agent and len(self._tunnel_agent) >= TUNNEL_GUESSES:
            del self._tunnel_agent[next(iter(self._tunnel_agent))]  # the oldest guess: bounded memory
        self._tunnel_agent[tunnel] = agent_id
