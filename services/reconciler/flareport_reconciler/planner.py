"""From a dirty target to its Cloudflare job: read the target's hostnames and claims, plan, commit.

This is the I/O edge around ``planning``: it reads only the hostnames indexed under the target (a zone's
hostnames, a tunnel's agent's hostnames), never the whole state, and hands the job to ``Coalescer.commit``,
which sends it only if its version differs from the last one sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter

from flareport_common.access import AccessFacts, group_definition
from flareport_common.keys import Keys
from flareport_common.messages.base import new_id
from flareport_common.messages.cfjobs import CfJobMessage, SyncAccessApp, SyncDnsZone, SyncTunnelIngress
from flareport_common.streams.codec import FIELD, encode
from flareport_reconciler.claimstore import HostnameClaims, decode_hash
from flareport_reconciler.coalesce import Coalescer, Committed
from flareport_reconciler.records import agent_views, text
from flareport_reconciler.resolution import AccessCatalog, Decision, resolve_hostname
from flareport_reconciler.scripts import forget_unclaimed, read_claims_hashes
from flareport_reconciler.targets import Target, access_app, held_app, tunnel_ingress, version_of, zone_records

log = structlog.get_logger("flareport.reconciler.planner")

JOBS = Counter("flareport_reconciler_jobs_total", "Cloudflare jobs emitted, by job type.", ["type"])
PLANS = Counter("flareport_reconciler_plans_total", "Target plans computed, by outcome.", ["outcome"])

_members_encoder = msgspec.json.Encoder()


async def read_claims(redis: aioredis.Redis, keys: Keys, hostnames: list[str]) -> list[HostnameClaims]:
    """The claims of each hostname, in order, in one round trip and one command."""
    if not hostnames:
        return []
    replies = await read_claims_hashes(redis, keys, hostnames)
    return [decode_hash(reply) for reply in replies]


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
        coalescer: Coalescer,
        *,
        hold_seconds: float = 600,
        owner_email: str | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._co = coalescer
        self._hold_seconds = hold_seconds
        self._owner_email = owner_email

    async def catalog(self) -> AccessCatalog:
        """The access groups and account facts that resolving Access labels needs (one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._keys.access_groups)
        pipe.hgetall(self._keys.access_facts)
        raw_groups, raw_facts = await pipe.execute()
        groups = {}
        for key, value in raw_groups.items():
            group_id = text(key)
            try:
                groups[group_id] = group_definition(msgspec.json.decode(value), group_id)
            except (msgspec.DecodeError, TypeError, ValueError, AttributeError):
                log.error("planner.bad_access_group", group_id=group_id)  # unresolvable: its rules fail closed
        facts = {text(k): text(v) for k, v in raw_facts.items()}
        return AccessCatalog(
            groups=groups,
            facts=AccessFacts(
                owner_email=self._owner_email or facts.get("owner_email") or None,
                otp_idp_id=facts.get("otp_idp_id") or None,
            ),
        )

    async def touch(self, targets: Iterable[Target], *, force: bool | AbstractSet[Target] = False) -> None:
        """Targets a change may affect: plan each at once, or fold the change into its next job. A forced target
        (``force=True``: all of them) taken now sends a job even if its desired version is unchanged."""
        ordered = sorted(set(targets))
        tokens = [new_id() for _ in ordered]
        forced = [force if isinstance(force, bool) else t in force for t in ordered]
        held = await self._co.mark_many([str(t) for t in ordered], tokens, now_ms(), forced)
        for target, token, mine in zip(ordered, tokens, held, strict=True):
            if mine:
                await self.plan(target, token)
            else:
                PLANS.labels("folded").inc()

    async def plan(self, target: Target, token: str) -> None:
        """Plan a target this caller holds (``token``) until no change is pending."""
        while True:
            built = await self.build(target)
            payload = encode(built.job)[FIELD] if built.job is not None else b""
            job_id = built.job.id if built.job is not None else ""
            members = _members_encoder.encode(built.members)
            code = await self._co.commit(str(target), token, job_id, built.version, payload, members, now_ms())
            if code == Committed.SENT and built.job is not None:
                JOBS.labels(type(built.job).__name__).inc()
                PLANS.labels("sent").inc()
                log.debug("planner.job_sent", target=str(target), version=built.version, job_id=job_id)
            elif code != Committed.AGAIN:
                PLANS.labels("unchanged" if code == Committed.UNCHANGED else "lost").inc()
            if code != Committed.AGAIN:
                return

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
        catalog = await self.catalog()
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
