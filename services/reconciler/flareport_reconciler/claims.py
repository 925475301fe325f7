"""The source step of every change: claims written to Redis from inventories, manual rules and admins' intents.

Every change follows the same two steps, so that a replica killed between them loses nothing:

1. here, one transaction writes the new source state (an agent's inventory entries, or a manual rule), the claims
   it implies, the indexes (agent -> hostnames, zone -> hostnames, grace deletions) and marks the hostnames dirty
   (a sorted set scored by time), and returns the marks;
2. the spine (``spine.Spine.converge``, with ``refresh.py``) re-resolves each dirty hostname (first claim wins,
   allow-lists), rewrites its rule documents if nothing it resolved from changed meanwhile (else it resolves
   again), touches every target it was or is part of, and only then clears the dirty mark — if its score is
   unchanged, so a newer change by another replica keeps its mark. A sweeper refreshes marks left by dead
   replicas.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import WatchError

from flareport_common.keys import Keys
from flareport_common.messages.events import Inventory
from flareport_common.messages.rules import Rule, RuleError
from flareport_common.readmodel import AgentRecord, ContainerLabelErrors
from flareport_common.readversion import bump as bump_version
from flareport_common.replies import text
from flareport_common.settings import DEFAULT_QUOTAS
from flareport_reconciler import agentquota
from flareport_reconciler.agents import retired
from flareport_reconciler.claimstore import ASSIGNED, HostnameClaims, decode_hash, encode_value, time_ms
from flareport_reconciler.inventory import (
    AgentInventory,
    ContainerEntry,
    InventoryEvent,
    Snapshot,
    apply_event,
    event_container_ids,
    label_errors,
)
from flareport_reconciler.records import TX_RETRIES, decode_agent, raw_bytes
from flareport_reconciler.records import encode as encode_doc
from flareport_reconciler.refresh import (
    HostnameRead,
    Prefetched,
    parse_read,
    queue_prefetch,
    read_hostnames_command,
)
from flareport_reconciler.resolution import Claim, zone_of
from flareport_reconciler.scripts import (
    NewClaim,
    RemovedClaim,
    mark_dirty,
    read_claims_hashes,
    read_inventory,
    write_claims,
)
from flareport_reconciler.targets import Target

ClaimKey = tuple[str, str]  # (hostname, claim id)
# What applying events changes: the inventory and container ids to store, old and new claims, label errors.
Change = tuple[AgentInventory, set[str], dict[ClaimKey, Claim], dict[ClaimKey, Claim], tuple[ContainerLabelErrors, ...]]

_entry_decoder = msgspec.json.Decoder(ContainerEntry)
_snapshot_decoder = msgspec.json.Decoder(Snapshot)
_claim_decoder = msgspec.json.Decoder(Claim)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``apply_inventory`` did: dirty marks, the agent record it saw, the hostname data it read back."""

    marks: dict[str, int] = field(default_factory=dict)
    record: AgentRecord | None = None
    retired: bool = False
    read: dict[str, HostnameRead] = field(default_factory=dict)
    prefetched: Prefetched | None = None  # the documents and catalog the refresh reads next (``queue_prefetch``)


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
        if rule.adopt:  # taking over foreign records is for admins only (the API refuses it from agents too)
            rule = msgspec.structs.replace(rule, adopt=False)
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


async def read_claims(redis: aioredis.Redis, keys: Keys, hostnames: list[str]) -> list[HostnameClaims]:
    """The claims of each hostname, in order, in one round trip and one command."""
    if not hostnames:
        return []
    replies = await read_claims_hashes(redis, keys, hostnames)
    return [decode_hash(reply) for reply in replies]


# An agent record keeps the label errors of at most this many containers: the record is read with every event.
MAX_ERROR_CONTAINERS = 200

QUOTA_REFUSED = Counter(
    "flareport_reconciler_agent_quota_refusals_total",
    "Containers not published because their agent is over its containers or hostnames limit.",
)


def with_quota_errors(
    errors: tuple[ContainerLabelErrors, ...],
    refused: Mapping[str, RuleError],
    entries: Mapping[str, ContainerEntry],
) -> tuple[ContainerLabelErrors, ...]:
    """The agent's label errors with a quota refusal on each refused container; ``entries`` are the containers as
    the change left them, refused ones included (their names)."""
    by_id = {e.container_id: e for e in errors}
    for cid, error in refused.items():
        found = by_id.get(cid)
        others = tuple(x for x in found.errors if x.label != error.label) if found else ()
        entry = entries.get(cid)
        name = entry.running.info.name if entry is not None and entry.running is not None else ""
        by_id[cid] = ContainerLabelErrors(container_id=cid, container_name=name, errors=(*others, error))
    return tuple(sorted(by_id.values(), key=lambda e: (e.container_name, e.container_id)))


class Claims:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        grace_seconds: float,
        limits: agentquota.Limits | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.grace_seconds = grace_seconds
        self.limits = limits or agentquota.Limits(
            containers=DEFAULT_QUOTAS.containers, hostnames=DEFAULT_QUOTAS.hostnames
        )
        # Told the end of each grace period written here (the background loop sleeps until the earliest it knows of).
        self.on_deletion: Callable[[float], None] | None = None

    # ---- step 1: write sources and claims ----------------------------------------------------------------------

    async def apply_inventory(self, agent_id: str, events: Sequence[InventoryEvent]) -> Applied:
        """Apply an agent's inventory events (one, or a batch that arrived together): entries, claims, the agent's
        label errors and dirty marks in one transaction.

        Three round trips: WATCH, one MGET of everything the events depend on (entries, snapshot, pruning floor,
        agent record), and the MULTI/EXEC, which also reads back what ``refresh`` needs next (so the refresh does
        not read again what was just written, nor wait for the documents and the Access catalog). Claims keep their
        first claim time inside the transaction (a Lua script), so the claims hashes need no WATCH.
        """
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    before, record, counts = await self._load_inventory(pipe, agent_id, events)
                    if record is not None and retired(record):
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return Applied(record=record, retired=True)
                    if record is not None and record.revoked_at is not None:
                        # Sent before the agent's last key was revoked: its claims were released, keep it so.
                        revoked = record.revoked_at
                        events = [event for event in events if event.occurred_at > revoked]
                        if not events:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return Applied(record=record, retired=True)
                    after, changed = before, set()
                    for event in events:  # the merge is order-independent; applying in turn is merging
                        after, touched = apply_event(after, event)
                        changed |= touched
                    changed = {cid for cid in changed if after.containers.get(cid) != before.containers.get(cid)}
                    if not changed and after.snapshot == before.snapshot:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return Applied(record=record)
                    change = self._claims_of(agent_id, before, after, changed, counts, record)
                    after, changed, old, new, errors = change
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if changed:
                        pipe.mset(
                            {k.agent_container(agent_id, c): _encoder.encode(after.containers[c]) for c in changed}
                        )
                        pipe.sadd(k.agent_containers(agent_id), *changed)
                    if after.snapshot is not None and after.snapshot != before.snapshot:
                        pipe.set(k.agent_snapshot(agent_id), _encoder.encode(after.snapshot))
                    if errors != (record.label_errors if record else ()):
                        if record is None:
                            record = AgentRecord(agent_id=agent_id, display_name=agent_id)
                        record = msgspec.structs.replace(record, label_errors=errors)
                        pipe.set(k.agent(agent_id), encode_doc(record))
                        pipe.sadd(k.agents_index, agent_id)
                        bump_version(pipe, k)
                    marks = self._write_claims(pipe, old, new, agent_id=agent_id)
                    hostnames = sorted(marks)
                    if hostnames:
                        read_hostnames_command(pipe, k, hostnames)
                        queue_prefetch(pipe, k, hostnames)
                    replies = await pipe.execute()
                    if not hostnames:
                        return Applied(marks=marks, record=record)
                    read = parse_read(hostnames, replies[-4])
                    prefetched = Prefetched.parse(hostnames, replies[-3:])
                    return Applied(marks=marks, record=record, read=read, prefetched=prefetched)
                except WatchError:
                    TX_RETRIES.labels("claims").inc()
                    continue

    def _claims_of(
        self,
        agent_id: str,
        before: AgentInventory,
        after: AgentInventory,
        changed: set[str],
        counts: tuple[int, int],
        record: AgentRecord | None,
    ) -> Change:
        """The claims ``changed`` containers give up and make, within the agent's quotas (``agentquota``): the
        inventory and changed ids to store (without containers over the containers limit), old and new claims, and
        the agent's label errors (a refused container carries one naming the limit)."""
        now = time.time()
        old: dict[ClaimKey, Claim] = {}
        new_of: dict[str, dict[ClaimKey, Claim]] = {}
        gained: dict[str, frozenset[str]] = {}
        for cid in changed:
            was = container_claims(agent_id, cid, before.containers.get(cid), now, self.grace_seconds)
            old.update(was)
            new_of[cid] = container_claims(agent_id, cid, after.containers.get(cid), now, self.grace_seconds)
            gained[cid] = frozenset(h for h, _ in new_of[cid]) - {h for h, _ in was}
        refusal = agentquota.check(self.limits, *counts, before.containers, after.containers, changed, gained)
        entries = after.containers
        if refusal.dropped:
            changed = changed - refusal.dropped
            kept = {c: e for c, e in entries.items() if c not in refusal.dropped}
            after = msgspec.structs.replace(after, containers=kept)
        new = {key: claim for cid in changed - refusal.unclaimed for key, claim in new_of[cid].items()}
        errors = label_errors(record.label_errors if record else (), after, changed)
        if refusal.errors:
            QUOTA_REFUSED.inc(len(refusal.errors))
            errors = with_quota_errors(errors, refusal.errors, entries)
        return after, changed, old, new, errors[:MAX_ERROR_CONTAINERS]

    async def _load_inventory(
        self, pipe: aioredis.client.Pipeline, agent_id: str, events: Sequence[InventoryEvent]
    ) -> tuple[AgentInventory, AgentRecord | None, tuple[int, int]]:
        """Watch and read what the events depend on: a container's event only that container's entry (so events
        of different containers of one agent never make each other retry); a snapshot every known container.
        All also depend on the snapshot, the pruning floor and the agent record (retired or not, label errors).
        """
        k = self._keys
        shared = [k.agent_snapshot(agent_id), k.agent_inventory(agent_id), k.agent(agent_id)]
        ids = sorted({c for event in events for c in event_container_ids(event, ())})
        if any(isinstance(event, Inventory) for event in events):
            await pipe.watch(k.agent_containers(agent_id), *shared)
            ids = sorted({*ids, *(text(c) for c in await pipe.smembers(k.agent_containers(agent_id)))})
        entry_keys = [k.agent_container(agent_id, cid) for cid in ids]
        await pipe.watch(*entry_keys, *shared)
        read = await read_inventory(
            pipe, k.agent_containers(agent_id), k.agent_hostnames(agent_id), [*entry_keys, *shared]
        )
        raws, counts = read.values, (read.containers, read.hostnames)
        containers = {cid: _entry_decoder.decode(raw) for cid, raw in zip(ids, raws, strict=False) if raw}
        snapshot_raw, floor_raw, record_raw = raws[len(ids) :]
        snapshot = _snapshot_decoder.decode(snapshot_raw) if snapshot_raw else None
        inventory = AgentInventory(containers=containers, snapshot=snapshot, pruned_seq=int(floor_raw or 0))
        return inventory, decode_agent(raw_bytes(record_raw or None)), counts

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
        removed = sorted(old.keys() - new.keys())
        if removed or new:
            gone = [
                RemovedClaim(hostname, claim_id, pending_member(hostname, claim_id)) for hostname, claim_id in removed
            ]
            added = [
                NewClaim(
                    hostname=hostname,
                    claim_id=claim_id,
                    pending_member=pending_member(hostname, claim_id),
                    claim_json=encode_value(claim),
                    delete_at=claim.delete_at,
                    owner=claim.owner,
                    claimed_at_ms=time_ms(claim.claimed_at),
                    zone_hostnames=k.target_hostnames(str(Target.zone(zone_of(claim.rule)))),
                )
                for (hostname, claim_id), claim in new.items()
            ]
            agent_set = k.agent_hostnames(agent_id) if agent_id is not None else None
            tunnel_set = k.target_hostnames(str(Target.tunnel(tunnel_id))) if tunnel_id is not None else None
            write_claims(pipe, k, gone, added, agent_hostnames=agent_set, tunnel_hostnames=tunnel_set)
            ends = [c.delete_at for c in added if c.delete_at is not None]
            if ends and self.on_deletion is not None:
                self.on_deletion(min(ends))
        return self.mark_dirty(pipe, {h for h, _ in old} | {h for h, _ in new})

    def mark_dirty(self, pipe: aioredis.client.Pipeline, hostnames: Iterable[str]) -> dict[str, int]:
        """Mark ``hostnames`` dirty in ``pipe``; returns the marks (the mark of a hostname marked in the same
        millisecond already is one higher: refreshes read the actual mark).
        """
        mark = int(time.time() * 1000)
        marks = dict.fromkeys(sorted(set(hostnames)), mark)
        if marks:
            mark_dirty(pipe, self._keys, mark, marks)
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
                    # An unchanged hostname keeps its claim time (``write_claims.lua`` keeps the earliest).
                    new = {(claim.rule.hostname, claim.claim_id): claim} if claim else {}
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
        hostnames, old = await self._agent_claims(agent_id, with_manual=True)
        tx = self._redis.pipeline(transaction=True)
        marks = self._write_claims(tx, old, {})
        marks.update(self.mark_dirty(tx, hostnames))
        await tx.execute()
        return marks

    async def _agent_claims(self, agent_id: str, *, with_manual: bool) -> tuple[list[str], dict[ClaimKey, Claim]]:
        """The hostnames the agent claims and its claims on them (an admin's manual rules pinned to it only if
        ``with_manual``)."""
        hostnames = [text(h) for h in await self._redis.smembers(self._keys.agent_hostnames(agent_id))]
        claims = {
            (hostname, claim.claim_id): claim
            for hostname, host in zip(hostnames, await read_claims(self._redis, self._keys, hostnames), strict=True)
            for claim in host.claims
            if claim.agent_id == agent_id and (with_manual or claim.manual_rule_id is None)
        }
        return hostnames, claims

    async def release_agent(self, agent_id: str) -> dict[str, int]:
        """The agent's last key was revoked: remove the claims of its containers (an admin's manual rules pinned
        to it stay) and forget its inventory, so that a key issued later starts from the agent's next report."""
        k = self._keys
        hostnames, old = await self._agent_claims(agent_id, with_manual=False)
        containers = [text(c) for c in await self._redis.smembers(k.agent_containers(agent_id))]
        tx = self._redis.pipeline(transaction=True)
        if containers:
            tx.delete(*(k.agent_container(agent_id, c) for c in containers))
        tx.delete(k.agent_containers(agent_id), k.agent_snapshot(agent_id))
        marks = self._write_claims(tx, old, {})
        marks.update(self.mark_dirty(tx, hostnames))
        await tx.execute()
        return marks

    async def assign(self, hostname: str, owner: str | None) -> dict[str, int]:
        """An admin's assignment of ``hostname`` to ``owner`` (None lifts it), kept in its claims hash so that
        every resolution and compare-and-set of the hostname sees it (``claimstore.ASSIGNED``)."""
        name = hostname.strip().rstrip(".").lower()
        tx = self._redis.pipeline(transaction=True)
        if owner is None:
            tx.hdel(self._keys.hostname_claims(name), ASSIGNED)
        else:
            tx.hset(self._keys.hostname_claims(name), ASSIGNED, owner)
        marks = self.mark_dirty(tx, [name])
        await tx.execute()
        return marks

    async def mark_agent_hostnames(self, agent_id: str) -> dict[str, int]:
        """The agent's tunnel or allow-lists changed: every hostname it claims must be resolved again."""
        hostnames = [text(h) for h in await self._redis.smembers(self._keys.agent_hostnames(agent_id))]
        pipe = self._redis.pipeline(transaction=True)
        marks = self.mark_dirty(pipe, hostnames)
        await pipe.execute()
        return marks

    async def mark_all_hostnames(self) -> dict[str, int]:
        """Something every rule may depend on changed (an access group, the account facts): every hostname that
        has a rule document is resolved again. Its name is the document key up to the path or ``@source``."""
        names = {re.split(r"[/@]", text(k), maxsplit=1)[0] for k in await self._redis.smembers(self._keys.rules_index)}
        pipe = self._redis.pipeline(transaction=True)
        marks = self.mark_dirty(pipe, sorted(names))
        await pipe.execute()
        return marks
