"""The plan step: a held target's Cloudflare job, built from the target's hostnames and their claims.

This is the I/O edge around ``resolution`` and ``targets``: it reads only the hostnames indexed under the target
(a zone's hostnames, a tunnel's agent's hostnames), never the whole state; the spine hands the job it builds to
``Coalescer.commit``, which sends it only if its version differs from the last one sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import CfJobMessage, SyncAccessApp, SyncDnsZone, SyncTunnelIngress
from flareport_reconciler.accessgroups import AccessGroups
from flareport_reconciler.claims import read_claims
from flareport_reconciler.records import agent_views, text
from flareport_reconciler.resolution import Decision, resolve_hostname
from flareport_reconciler.scripts import forget_unclaimed
from flareport_reconciler.targets import (
    Target,
    access_app,
    held_app,
    parse_all,
    tunnel_ingress,
    version_of,
    zone_records,
)

log = structlog.get_logger("flareport.reconciler.planner")


@dataclass(frozen=True, slots=True)
class Built:
    version: str
    job: CfJobMessage | None
    members: tuple[str, ...] = ()


def now_ms() -> int:
    return int(time.time() * 1000)


def pruning(recovered_at: bytes | str | None, hold_seconds: float, now: float) -> bool:
    """Whether jobs may remove what they do not list: not while the recovery hold after a loss of data lasts."""
    if recovered_at is None:
        return True
    try:
        return now >= float(recovered_at) + hold_seconds
    except ValueError:
        return True


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

    async def known_targets(self) -> list[Target]:
        """Every target a job was ever sent for (``coalesce`` indexes them as it commits)."""
        return parse_all(text(t) for t in await self._redis.smembers(self._keys.targets_index))

    async def decisions_for(self, hostnames: Iterable[str], *, index_keys: Sequence[str] = ()) -> list[Decision]:
        """Resolve ``hostnames``; those without any claim left are removed from ``index_keys`` (the sets they
        were found in), atomically and only if still unclaimed, so indexes do not grow forever.
        """
        names = sorted(set(hostnames))
        if not names:
            return []
        per_host = await read_claims(self._redis, self._keys, names)
        unclaimed = [name for name, host in zip(names, per_host, strict=True) if not host.claims and not host.assigned]
        if unclaimed and index_keys:
            await forget_unclaimed(self._redis, self._keys, index_keys, unclaimed)
        wanted = (c.agent_id for host in per_host for c in host.claims if c.agent_id)
        agents = await agent_views(self._redis, self._keys, wanted)
        catalog = await self._access.catalog()
        decisions: list[Decision] = []
        for host in per_host:
            decisions.extend(resolve_hostname(host.claims, agents, assigned=host.assigned, catalog=catalog))
        return decisions

    async def build(self, target: Target) -> Built:
        kind, name = target.kind, target.name
        reads = self._redis.pipeline(transaction=False)
        reads.hget(self._keys.target_state(str(target)), "version")
        reads.hget(self._keys.tunnel_agents, name)
        reads.get(self._keys.keys_recovered_at)
        stored, agent, recovered_at = await reads.execute()
        prune = pruning(recovered_at, self._hold_seconds, time.time())
        # A held job differs from the pruning one, so the first plan after the hold sends a job again.
        held = "" if prune else ":held"
        if kind == "tunnel":
            sources = [self._keys.target_hostnames(str(target))]
            if agent is not None:
                sources.append(self._keys.agent_hostnames(text(agent)))
            hostnames = {text(h) for h in await self._redis.sunion(sources)}
            rules = tunnel_ingress(name, await self.decisions_for(hostnames, index_keys=sources))
            members = tuple(e.hostname + (e.path or "") for e in rules)
            if not rules and not stored:
                return Built("", None)
            version = version_of(rules) + held
            job = SyncTunnelIngress(tunnel_id=name, version=version, rules=rules, prune=prune)
            return Built(version, job, members)
        if kind == "zone":
            index = self._keys.target_hostnames(str(target))
            hostnames = {text(h) for h in await self._redis.smembers(index)}
            decisions = await self.decisions_for(hostnames, index_keys=[index])
            records = zone_records(name, decisions)
            names = {r.name for r in records}
            members = tuple(
                d.claim.rule.key for d in decisions if d.verdict == "winner" and d.claim.rule.hostname in names
            )
            if not records and not stored:
                return Built("", None)
            version = version_of(records) + held
            return Built(version, SyncDnsZone(zone_name=name, version=version, records=records, prune=prune), members)
        # An Access app: one rule's.
        hostname = target.hostname
        decisions = await self.decisions_for([hostname])
        app = access_app(name, decisions)
        if app is None and stored and stored != b"absent":
            # A rule held back by an Access error keeps an app that lets nobody in until its routes are gone.
            app = held_app(name, decisions)
        if app is None and not stored:
            return Built("", None)
        version = version_of(app) if app is not None else "absent"
        return Built(version, SyncAccessApp(hostname=hostname, path=target.path, version=version, app=app), (name,))
