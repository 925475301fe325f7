"""Claims in Redis: written from inventories and manual rules, resolved per hostname into the read model.

Every change follows the same two steps, so that a replica killed between them loses nothing:

1. one transaction writes the new source state (an agent's inventory entries, or a manual rule), the claims it
   implies, the indexes (agent -> hostnames, zone -> hostnames, grace deletions) and marks the hostnames dirty
   (a sorted set scored by time);
2. ``refresh`` re-resolves each dirty hostname (first claim wins, allow-lists), rewrites its rule documents,
   touches every target it was or is part of, and only then clears the dirty mark — if its score is unchanged,
   so a newer change by another replica keeps its mark. A sweeper refreshes marks left by dead replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from flareport_common.keys import Keys
from flareport_common.messages.events import ContainerStart, Inventory
from flareport_common.messages.rules import Rule
from flareport_common.readmodel import RuleRecord
from flareport_reconciler.inventory import (
    AgentInventory,
    ContainerEntry,
    InventoryEvent,
    Snapshot,
    apply_event,
)
from flareport_reconciler.planner import Planner, decode_claims
from flareport_reconciler.planning import (
    Claim,
    Decision,
    access_app,
    resolve_hostname,
    tunnel_ingress,
    version_of,
    wants_access,
    zone_of,
    zone_records,
)
from flareport_reconciler.records import TX_RETRIES, agent_views, text, update_rules
from flareport_reconciler.ruledocs import doc_key, merge_docs, template

_entry_decoder = msgspec.json.Decoder(ContainerEntry)
_snapshot_decoder = msgspec.json.Decoder(Snapshot)
_claim_decoder = msgspec.json.Decoder(Claim)
_encoder = msgspec.json.Encoder()

# ARGV: hostname, mark, hostname, mark, ... — each removed only if its mark is still the one given.
CLEAR_DIRTY = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


class HostnameState(msgspec.Struct, kw_only=True):
    # target -> fingerprint of this hostname's part of it: a change touches only targets whose part changed.
    targets: dict[str, str] = msgspec.field(default_factory=dict)
    docs: tuple[str, ...] = ()


_state_decoder = msgspec.json.Decoder(HostnameState)


def container_claims(
    agent_id: str, cid: str, entry: ContainerEntry | None, now: float, grace: float
) -> dict[tuple[str, str], Claim]:
    """The claims a container entry makes at ``now``, keyed by (hostname, claim id)."""
    if entry is None or entry.running is None or not entry.published(now, grace):
        return {}
    info = entry.running.info
    delete_at = entry.delete_at(grace)
    claims: dict[tuple[str, str], Claim] = {}
    for rule in map(normalized, info.rules):
        claim = Claim(
            source=f"agent:{agent_id}/{cid}",
            rule=rule,
            claimed_at=entry.running.at,
            agent_id=agent_id,
            container_id=cid,
            container_name=info.name,
            delete_at=delete_at,
        )
        claims[(rule.hostname, claim.claim_id)] = claim
    return claims


def normalized(rule: Rule) -> Rule:
    """DNS names are case-insensitive: claims on ``App.example.com`` and ``app.example.com`` must meet."""
    hostname = rule.hostname.strip().rstrip(".").lower()
    return rule if hostname == rule.hostname else msgspec.structs.replace(rule, hostname=hostname)


def pending_member(hostname: str, claim_id: str) -> str:
    return f"{hostname}\x1f{claim_id}"


class Claims:
    def __init__(self, redis: aioredis.Redis, keys: Keys, planner: Planner, *, grace_seconds: float) -> None:
        self._redis = redis
        self._keys = keys
        self._planner = planner
        self.grace_seconds = grace_seconds
        self._clear_dirty = redis.register_script(CLEAR_DIRTY)

    # ---- step 1: write sources and claims ----------------------------------------------------------------------

    async def apply_inventory(self, agent_id: str, event: InventoryEvent) -> dict[str, int]:
        """Apply one inventory event; returns the hostnames it marked dirty (with their mark)."""
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    before = await self._load_inventory(pipe, agent_id, event)
                    after, changed = apply_event(before, event)
                    if not changed and after.snapshot == before.snapshot:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return {}
                    now = time.time()
                    old: dict[tuple[str, str], Claim] = {}
                    new: dict[tuple[str, str], Claim] = {}
                    for cid in changed:
                        old.update(container_claims(agent_id, cid, before.containers.get(cid), now, self.grace_seconds))
                        new.update(container_claims(agent_id, cid, after.containers.get(cid), now, self.grace_seconds))
                    new = await self._keep_claimed_at(pipe, new)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for cid in changed:
                        pipe.set(k.agent_container(agent_id, cid), _encoder.encode(after.containers[cid]))
                    if changed:
                        pipe.sadd(k.agent_containers(agent_id), *changed)
                    if after.snapshot is not None and after.snapshot != before.snapshot:
                        pipe.set(k.agent_snapshot(agent_id), _encoder.encode(after.snapshot))
                    marks = self._write_claims(pipe, old, new, agent_id=agent_id)
                    await pipe.execute()
                    return marks
                except WatchError:
                    TX_RETRIES.labels("claims").inc()
                    continue

    async def _load_inventory(
        self, pipe: aioredis.client.Pipeline, agent_id: str, event: InventoryEvent
    ) -> AgentInventory:
        """Watch and read what the event depends on: a single container's event only that container's entry and
        the snapshot (so events of different containers of one agent never make each other retry); a snapshot
        every known container.
        """
        k = self._keys
        snapshot_key = k.agent_snapshot(agent_id)
        if isinstance(event, Inventory):
            await pipe.watch(k.agent_containers(agent_id), snapshot_key)
            ids = sorted(text(c) for c in await pipe.smembers(k.agent_containers(agent_id)))
        else:
            ids = [event.container.container_id if isinstance(event, ContainerStart) else event.container_id]
        entry_keys = [k.agent_container(agent_id, cid) for cid in ids]
        await pipe.watch(*entry_keys, snapshot_key)
        raws = await pipe.mget([*entry_keys, snapshot_key])
        containers = {
            cid: _entry_decoder.decode(raw) for cid, raw in zip(ids, raws[:-1], strict=True) if raw is not None
        }
        snapshot = _snapshot_decoder.decode(raws[-1]) if raws[-1] is not None else None
        return AgentInventory(containers=containers, snapshot=snapshot)

    async def _keep_claimed_at(
        self, pipe: aioredis.client.Pipeline, claims: dict[tuple[str, str], Claim]
    ) -> dict[tuple[str, str], Claim]:
        """A claim that already exists keeps its first claim time: a restart does not lose a hostname."""
        if not claims:
            return claims
        keys = [self._keys.hostname_claims(h) for h, _ in claims]
        await pipe.watch(*keys)
        # Read through another connection in one round trip; the WATCH above still guards these keys.
        reads = self._redis.pipeline(transaction=False)
        for hostname, claim_id in claims:
            reads.hget(self._keys.hostname_claims(hostname), claim_id)
        kept: dict[tuple[str, str], Claim] = {}
        for ((hostname, claim_id), claim), raw in zip(claims.items(), await reads.execute(), strict=True):
            if raw is not None:
                claim = msgspec.structs.replace(claim, claimed_at=_claim_decoder.decode(raw).claimed_at)
            kept[(hostname, claim_id)] = claim
        return kept

    def _write_claims(
        self,
        pipe: aioredis.client.Pipeline,
        old: Mapping[tuple[str, str], Claim],
        new: Mapping[tuple[str, str], Claim],
        *,
        agent_id: str | None = None,
        tunnel_id: str | None = None,
    ) -> dict[str, int]:
        k = self._keys
        for hostname, claim_id in old.keys() - new.keys():
            pipe.hdel(k.hostname_claims(hostname), claim_id)
            pipe.zrem(k.pending_deletions, pending_member(hostname, claim_id))
        for (hostname, claim_id), claim in new.items():
            pipe.hset(k.hostname_claims(hostname), claim_id, _encoder.encode(claim))
            member = pending_member(hostname, claim_id)
            if claim.delete_at is not None:
                pipe.zadd(k.pending_deletions, {member: claim.delete_at})
            else:
                pipe.zrem(k.pending_deletions, member)
            pipe.sadd(k.target_hostnames(f"zone:{zone_of(claim.rule)}"), hostname)
            if agent_id is not None:
                pipe.sadd(k.agent_hostnames(agent_id), hostname)
            if tunnel_id is not None:
                pipe.sadd(k.target_hostnames(f"tunnel:{tunnel_id}"), hostname)
        return self.mark_dirty(pipe, {h for h, _ in old} | {h for h, _ in new})

    def mark_dirty(self, pipe: aioredis.client.Pipeline, hostnames: Iterable[str]) -> dict[str, int]:
        mark = int(time.time() * 1000)
        marks = dict.fromkeys(hostnames, mark)
        if marks:
            pipe.zadd(self._keys.dirty_hostnames, marks)  # type: ignore[arg-type,unused-ignore]
        return marks

    async def upsert_manual(
        self, rule_id: str, rule: Rule, agent_id: str | None, tunnel_id: str | None
    ) -> dict[str, int]:
        claim = Claim(
            source=f"manual:{rule_id}",
            rule=normalized(rule),
            claimed_at=time.time(),
            agent_id=agent_id,
            tunnel_id=tunnel_id,
            manual_rule_id=rule_id,
        )
        return await self._replace_manual(rule_id, claim)

    async def delete_manual(self, rule_id: str) -> dict[str, int]:
        return await self._replace_manual(rule_id, None)

    async def _replace_manual(self, rule_id: str, claim: Claim | None) -> dict[str, int]:
        key = self._keys.reconciler_manual_claims
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, rule_id)
                    previous = _claim_decoder.decode(raw) if raw is not None else None
                    old = {(previous.rule.hostname, previous.claim_id): previous} if previous else {}
                    new = {(claim.rule.hostname, claim.claim_id): claim} if claim else {}
                    if claim is not None and previous is not None and previous.rule.hostname == claim.rule.hostname:
                        new = {k: msgspec.structs.replace(c, claimed_at=previous.claimed_at) for k, c in new.items()}
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if claim is None:
                        pipe.hdel(key, rule_id)
                    else:
                        pipe.hset(key, rule_id, _encoder.encode(next(iter(new.values()))))
                    agent = claim.agent_id if claim else None
                    tunnel = claim.tunnel_id if claim and not claim.agent_id else None
                    marks = self._write_claims(pipe, old, new, agent_id=agent, tunnel_id=tunnel)
                    await pipe.execute()
                    return marks
                except WatchError:
                    TX_RETRIES.labels("claims").inc()
                    continue

    async def withdraw_agent(self, agent_id: str) -> dict[str, int]:
        """Remove every claim of an agent (decommission): its hostnames are refreshed without them."""
        hostnames = [text(h) for h in await self._redis.smembers(self._keys.agent_hostnames(agent_id))]
        pipe = self._redis.pipeline(transaction=False)
        for hostname in hostnames:
            pipe.hgetall(self._keys.hostname_claims(hostname))
        results = await pipe.execute() if hostnames else []
        old = {
            (hostname, claim.claim_id): claim
            for hostname, raw in zip(hostnames, results, strict=True)
            for claim in decode_claims(raw)
            if claim.agent_id == agent_id
        }
        tx = self._redis.pipeline(transaction=True)
        marks = self._write_claims(tx, old, {})
        marks.update(self.mark_dirty(tx, hostnames))
        await tx.execute()
        return marks

    async def mark_agent_hostnames(self, agent_id: str) -> dict[str, int]:
        """The agent's tunnel or allow-lists changed: every hostname it claims must be resolved again."""
        hostnames = [text(h) for h in await self._redis.smembers(self._keys.agent_hostnames(agent_id))]
        pipe = self._redis.pipeline(transaction=True)
        marks = self.mark_dirty(pipe, hostnames)
        await pipe.execute()
        return marks

    # ---- step 2: resolve hostnames, write documents, touch targets -------------------------------------------

    async def refresh(self, marks: Mapping[str, int]) -> None:
        hostnames = sorted(marks)
        if not hostnames:
            return
        pipe = self._redis.pipeline(transaction=False)
        for hostname in hostnames:
            pipe.hgetall(self._keys.hostname_claims(hostname))
            pipe.get(self._keys.hostname_state(hostname))
        raw = await pipe.execute()
        per_host = {h: decode_claims(raw[2 * i]) for i, h in enumerate(hostnames)}
        previous = {
            h: _state_decoder.decode(raw[2 * i + 1]) if raw[2 * i + 1] else HostnameState()
            for i, h in enumerate(hostnames)
        }
        agents = await agent_views(
            self._redis, self._keys, (c.agent_id for cs in per_host.values() for c in cs if c.agent_id)
        )
        targets: set[str] = set()
        states: dict[str, HostnameState] = {}
        all_docs: dict[str, RuleRecord] = {}
        stale: set[str] = set()
        for hostname in hostnames:
            decisions = resolve_hostname(per_host[hostname], agents)
            docs = {doc_key(d): template(d) for d in decisions}
            all_docs.update(docs)
            stale |= set(previous[hostname].docs) - docs.keys()
            now_targets = targets_of(decisions)
            before = previous[hostname].targets
            targets |= {t for t in now_targets.keys() | before.keys() if now_targets.get(t) != before.get(t)}
            states[hostname] = HostnameState(targets=now_targets, docs=tuple(sorted(docs)))
        await update_rules(self._redis, self._keys, all_docs.keys() | stale, merge_docs(all_docs))
        await self._planner.touch(targets)
        pipe = self._redis.pipeline(transaction=False)
        for hostname, state in states.items():
            if state.docs:
                pipe.set(self._keys.hostname_state(hostname), _encoder.encode(state))
            else:
                pipe.delete(self._keys.hostname_state(hostname))
        args: list[str | int] = [item for hostname in hostnames for item in (hostname, marks[hostname])]
        await self._clear_dirty(keys=[self._keys.dirty_hostnames], args=args, client=pipe)
        await pipe.execute()


def targets_of(decisions: list[Decision]) -> dict[str, str]:
    """The targets a hostname's winners are part of, each with a fingerprint of that part."""
    targets: dict[str, str] = {}
    for d in decisions:
        if d.verdict != "winner":
            continue
        zone = zone_of(d.claim.rule)
        targets[f"zone:{zone}"] = version_of(zone_records(zone, decisions))
        if d.tunnel_id is not None:
            targets[f"tunnel:{d.tunnel_id}"] = version_of(tunnel_ingress(d.tunnel_id, decisions))
        if wants_access(d.claim.rule):
            key = d.claim.rule.key
            targets[f"access:{key}"] = version_of(access_app(key, decisions, {}))
    return targets
