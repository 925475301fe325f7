"""Applying a ``sync_dns_zone`` job: observed state, the pure plan, batched writes with a single-call fallback.

Reads are the expensive part at scale (every read costs the same rate-limit budget as a write), so the
worker keeps an observed copy of each zone's A/AAAA/CNAME records in Redis, updated from its own writes,
and reads Cloudflare only when that copy is missing (one list call with the largest page size), when
Cloudflare contradicts it (a conflict or an identical record we did not know about), after an ambiguous
write, and in ``verify_target``. The names each target wrote are kept too, so a record this target no
longer wants is removed — and only if it still carries our marker. A job with ``prune=False`` (sent while the
control plane rebuilds after a loss of its data) keeps such records instead, and they stay in the target's
names, so the next job that prunes removes them.

Records are written only in the zone the job names (``zones.zone_problem``), and only under names that pass
the name check (``names.name_problem``); any other record is a per-record error and the rest converge.

Writes for a zone go in ``dns_records/batch`` calls of at most ``batch_size`` operations. Cloudflare runs
a batch in one transaction, so a refused batch changed nothing; its operations are then re-done one call
each, which isolates the offending record (reported per hostname) and lets every other record converge. The
offending write is remembered (``refusals.py``) and left out of the zone's next batches, so the fallback costs
single calls for that job only: the zone's next change is one batch call again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.typing import EncodableT, FieldT

from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredRecord, SyncDnsZone
from flareport_common.messages.cfresults import CfError, CfNote
from flareport_common.redisconn import replicated
from flareport_common.redissettings import RedisNodes
from flareport_common.replies import text
from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi
from flareport_dns_worker.dns_plan import (
    COLLIDING_TYPES,
    Delete,
    DnsPlan,
    DnsRecord,
    Patch,
    Post,
    Wanted,
    owner_of,
    plan_dns,
)
from flareport_dns_worker.lease import Leases
from flareport_dns_worker.metrics import ADOPTED, BATCH_FALLBACKS, BATCH_SIZE, CONFLICTS, LEFT_OUT
from flareport_dns_worker.names import bare, name_problem
from flareport_dns_worker.outcome import Outcome, Reread
from flareport_dns_worker.refusals import Refusals, fingerprint, without_refused
from flareport_dns_worker.zones import ZoneDirectory, zone_problem

log = structlog.get_logger("flareport.dns_worker.dns")
RECORDS = "/zones/{zone_id}/dns_records"
MAX_PER_PAGE = 5_000_000  # Cloudflare's documented maximum for listing DNS records
LOADED = "\x00loaded"  # field of the zone cache hash set once the whole zone has been read
SYNCED = "\x00synced"  # field of a target's observed hash: its name list is known (even when empty)
_records = msgspec.json.Decoder(list[DnsRecord])
Current = dict[str, list[DnsRecord]]


def _names_written(raw: Mapping[Any, Any]) -> dict[str, str] | None:
    """A target's observed hash as record name -> zone id of what it wrote, or None when unknown."""
    if not raw.get(SYNCED.encode()):
        return None
    return {text(k): text(v) for k, v in raw.items() if text(k) != SYNCED}


class DnsSync:
    def __init__(
        self,
        api: CloudflareApi,
        redis: aioredis.Redis,
        keys: Keys,
        zones: ZoneDirectory,
        leases: Leases,
        *,
        owner: str,
        batch_size: int,
        nodes: RedisNodes | None = None,
    ) -> None:
        self._leases = leases
        self._nodes = nodes or RedisNodes()
        self._api = api
        self._redis = redis
        self._keys = keys
        self._zones = zones
        self._owner = owner
        self._batch_size = batch_size
        self._refusals = Refusals(redis, keys)

    async def sync(
        self, job: SyncDnsZone, *, fresh: bool = False, observed: Mapping[Any, Any] | None = None
    ) -> Outcome:
        """``observed``: the target's observed hash (the names it wrote) when the caller read it with its lease."""
        zones = await self._zones.knowing(job.zone_name)
        wanted, errors = placed(job.records, job.zone_name, zones)
        for error in errors:
            LEFT_OUT.labels("zone" if error.kind == "zone" else "invalid_name").inc()
        outcome = Outcome(errors=errors)
        job_zone_id = zones.get(bare(job.zone_name))
        # One zone at most: the job's own. Other zones appear below only to clean up what this target wrote there
        # before (earlier versions resolved names to the longest matching zone).
        by_zone: dict[str, list[Wanted]] = {job_zone_id: wanted} if job_zone_id is not None and wanted else {}
        # The names this target wrote before. Without that list (first sync, or Redis lost it) nothing beyond
        # the wanted names is claimed: several targets can share one zone, and a record this target cannot
        # prove it wrote may well belong to another. A lost list can leave a stale record behind (still
        # marked, so it can be found); it can never delete someone else's.
        managed = (_names_written(observed) if observed is not None else await self._managed(job.target)) or {}
        new_managed: dict[str, str] = {}
        for zone_id in sorted(by_zone):
            names = {n for n, z in managed.items() if z == zone_id}
            zone_outcome, kept = await self._sync_zone(job.target, zone_id, by_zone[zone_id], names, fresh, job.prune)
            outcome.add(zone_outcome)
            new_managed.update(dict.fromkeys(kept, zone_id))
        # Names in zones that no longer hold any wanted record still need cleaning up.
        orphans: dict[str, set[str]] = defaultdict(set)
        for name, zone_id in managed.items():
            if zone_id not in by_zone:
                orphans[zone_id].add(name)
        for zone_id, names in sorted(orphans.items()):
            if not job.prune:
                # Nothing to write there: the names stay this target's, for the next pruning job to clean up.
                new_managed.update(dict.fromkeys(names, zone_id))
                continue
            zone_outcome, kept = await self._sync_zone(job.target, zone_id, [], names, fresh, job.prune)
            outcome.add(zone_outcome)
            new_managed.update(dict.fromkeys(kept, zone_id))
        await self._save_managed(job.target, new_managed)
        return outcome

    async def _sync_zone(
        self, target: str, zone_id: str, wanted: list[Wanted], names: set[str], fresh: bool, prune: bool
    ) -> tuple[Outcome, set[str]]:
        # Jobs are leased per target, but another target can write in this zone too (cleaning up what it wrote
        # there in the past), and the zone's observed copy is shared: one writer per zone keeps that copy true.
        zone_target = f"zone-id:{zone_id}"
        lease = self._keys.target_lease(zone_target)
        # The zone's observed copy and its refused writes are written only under this lease: read in the round
        # trip that takes it (this is the path of every change to its DNS batch). A fresh sync reads neither.
        hashes = () if fresh else (self._keys.cf_zone_records(zone_id), self._keys.cf_zone_refused(zone_id))
        token, read = await self._leases.take_reading(lease, zone_target, wait=60.0, hashes=hashes)
        async with self._leases.held(lease, token, zone_target):
            cached = (read[0], read[1]) if read else None
            return await self._sync_zone_locked(target, zone_id, wanted, names, fresh, prune, cached)

    async def _sync_zone_locked(
        self,
        target: str,
        zone_id: str,
        wanted: list[Wanted],
        names: set[str],
        fresh: bool,
        prune: bool,
        cached: tuple[Mapping[Any, Any], Mapping[Any, Any]] | None = None,
    ) -> tuple[Outcome, set[str]]:
        """``cached``: the zone's observed records and refused writes, read with its lease (not when fresh)."""
        # A fresh sync (verify_target, the periodic drift check) retries every write refused before.
        if fresh:
            await self._refusals.forget(zone_id)
            refused: dict[str, CfError] = {}
        else:
            refused = await self._refusals.load(zone_id, cached[1] if cached is not None else None)
        refused_now: dict[str, CfError] = {}
        try:
            granted: set[str] = set()
            for attempt in range(3):
                first = cached[0] if cached is not None and attempt == 0 else None
                current = await self._current(zone_id, fresh=fresh or attempt > 0, raw=first)
                plan = plan_dns(current, wanted, self._owner, names, prune=prune)
                if plan.conflicts:
                    # Only a conflict costs the look at the admin's grants (``flareport rules adopt``).
                    granted = await self.granted({c.hostname for c in plan.conflicts if c.hostname})
                    if granted:
                        wanted = [replace(w, adopt=True) if w.name in granted else w for w in wanted]
                        plan = plan_dns(current, wanted, self._owner, names, prune=prune)
                plan, again = without_refused(plan, refused)
                outcome = Outcome(errors=[*plan.conflicts, *again])
                CONFLICTS.labels("dns").inc(len(plan.conflicts))
                LEFT_OUT.labels("refused").inc(len(again))
                marking = {p.name for p in plan.posts} | {p.name for p in plan.patches}
                aside = await self._claim_ahead(target, zone_id, marking - names)
                try:
                    await self._apply(zone_id, plan, current, outcome, refused_now, final=attempt == 2, aside=aside)
                except Reread as reason:
                    log.info("dns.reread", zone_id=zone_id, reason=str(reason))
                    await self._redis.hdel(self._keys.cf_zone_records(zone_id), LOADED)
                    # What Cloudflare refused in this attempt is not sent again in the next one.
                    refused.update(refused_now)
                    continue
                failed = {e.hostname for e in outcome.errors}
                taken = granted & (plan.managed - failed)
                if taken:  # used: the grant was for this take-over, not for whatever appears on the name later
                    await self._redis.hdel(self._keys.adopt_grants, *sorted(taken))
                    plan.adopted.update(dict.fromkeys(taken, "foreign records taken over as an admin asked"))
                adopted = [CfNote(hostname=n, message=what) for n, what in plan.adopted.items() if n not in failed]
                outcome.notes.extend(adopted)
                ADOPTED.labels("dns").inc(len(adopted))
                # Names whose cleanup failed (or kept, without pruning) stay managed: a later job removes them. Only
                # the names the plan does not manage need the look (a zone's whole list would, at every job).
                left = {
                    n
                    for n in names - plan.managed
                    if any(owner_of(r.comment) == self._owner for r in current.get(n, ()))
                }
                return outcome, plan.managed | left
            raise AssertionError("unreachable: the last attempt never rereads")
        finally:
            await self._refusals.remember(zone_id, refused_now)

    # ---- observed state ----------------------------------------------------------------------------------

    async def granted(self, names: set[str]) -> set[str]:
        """Which of ``names`` an admin allowed to take over (``Keys.adopt_grants``)."""
        ordered = sorted(names)
        found = await self._redis.hmget(self._keys.adopt_grants, ordered)
        return {name for name, grant in zip(ordered, found, strict=True) if grant is not None}

    async def _managed(self, target: str) -> dict[str, str] | None:
        """Record name -> zone id of what this target wrote, or None when unknown."""
        return _names_written(await self._redis.hgetall(self._keys.target_observed(target)))

    async def _claim_ahead(self, target: str, zone_id: str, names: set[str]) -> bool:
        """Before the batches that mark ``names`` ours: add them to the target's list and set the zone's copy aside
        as incomplete, and have a replica hold both (REDIS_WAIT_REPLICAS, as agent keys and enrolments). True when
        the copy was set aside (``_apply`` marks it complete again once the answers are in it).

        The list is what lets a later job remove a record this target wrote, and the copy is what that job plans
        from. Both were written only after Cloudflare's answer, so a Redis failover could lose them while Cloudflare
        kept the record (and lose the stop of its container that came next): the record, marked ours, was in no
        list and not in the copy, and was never removed. Now a promoted replica holds the name in the list and a
        copy that is not complete, which the next job reads again from Cloudflare. A name listed ahead whose write
        fails or never comes costs nothing: a record is removed only when Cloudflare holds it with our marker, and
        the list is written whole again after the job. ``SYNCED`` too: a list known to hold at least these names
        prunes at most them."""
        if not names:
            return False
        # Two keys of two slots, not one transaction (Redis Cluster would refuse it): either write alone is safe (a
        # name listed ahead, a copy read again), and the WAIT after both covers both.
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._keys.target_observed(target), mapping={**dict.fromkeys(sorted(names), zone_id), SYNCED: "1"})
        pipe.hdel(self._keys.cf_zone_records(zone_id), LOADED)
        await pipe.execute()
        await replicated(self._redis, self._nodes, self._keys.replicated_channel, what="dns-names")
        return True

    async def _save_managed(self, target: str, names: dict[str, str]) -> None:
        key = self._keys.target_observed(target)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        fields: dict[Any, Any] = {**names, SYNCED: "1"}
        pipe.hset(key, mapping=fields)
        await pipe.execute()

    async def _current(self, zone_id: str, *, fresh: bool, raw: Mapping[Any, Any] | None = None) -> Current:
        """The zone's records: the observed copy (``raw`` when the caller read it with the zone's lease), or
        Cloudflare's list when ``fresh`` or when there is no complete copy."""
        key = self._keys.cf_zone_records(zone_id)
        if not fresh:
            if raw is None:
                raw = await self._redis.hgetall(key)
            if raw.get(LOADED.encode()):
                return {text(k): _records.decode(v) for k, v in raw.items() if text(k) != LOADED}
        listed = await self._api.list_all(RECORDS, per_page=MAX_PER_PAGE, zone_id=zone_id)
        current: Current = defaultdict(list)
        for item in listed:
            if str(item.get("type", "")).upper() in COLLIDING_TYPES:
                record = DnsRecord.from_api(item)
                current[record.name].append(record)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        mapping: dict[Any, Any] = {name: msgspec.json.encode(records) for name, records in current.items()}
        mapping[LOADED] = b"1"
        pipe.hset(key, mapping=mapping)
        await pipe.execute()
        return dict(current)

    async def _store(self, zone_id: str, current: Current, names: Iterable[str], *, complete: bool = False) -> None:
        """Fold ``names``' records into the zone's copy; ``complete``: mark the copy complete again (set aside by
        ``_claim_ahead``), in the same transaction."""
        key = self._keys.cf_zone_records(zone_id)
        # One HSET and one HDEL for the whole chunk: a batch of 200 names was 200 commands to pack and run.
        kept: dict[FieldT, EncodableT] = {}
        gone: list[str] = []
        for name in set(names):
            records = current.get(name) or []
            if records:
                kept[name] = msgspec.json.encode(records)
            else:
                gone.append(name)
        if complete:
            kept[LOADED] = b"1"
        if not kept and not gone:
            return
        pipe = self._redis.pipeline(transaction=complete)
        if kept:
            pipe.hset(key, mapping=kept)
        if gone:
            pipe.hdel(key, *gone)
        await pipe.execute()

    # ---- writes ----------------------------------------------------------------------------------------------

    async def _apply(
        self,
        zone_id: str,
        plan: DnsPlan,
        current: Current,
        outcome: Outcome,
        refused: dict[str, CfError],
        *,
        final: bool,
        aside: bool = False,
    ) -> None:
        """``aside``: the zone's copy was set aside before the calls (``_claim_ahead``): complete again with the
        last chunk's answers."""
        chunks = plan.batches(self._batch_size)
        for n, chunk in enumerate(chunks, 1):
            body: dict[str, Any] = {}
            if chunk.deletes:
                body["deletes"] = [{"id": d.record_id} for d in chunk.deletes]
            if chunk.patches:
                body["patches"] = [{"id": p.record_id, **p.body} for p in chunk.patches]
            if chunk.posts:
                body["posts"] = [p.body for p in chunk.posts]
            touched = {d.name for d in chunk.deletes} | {p.name for p in chunk.patches} | {p.name for p in chunk.posts}
            BATCH_SIZE.observe(chunk.writes)
            outcome.writes += 1
            try:
                envelope = await self._api.request("POST", RECORDS + "/batch", body=body, zone_id=zone_id)
            except CfTransientError as error:
                # The batch may or may not have been applied: only a fresh read can tell.
                if final:
                    raise
                raise Reread(str(error)) from error
            except CfApiError as error:
                if error.kind in ("permission", "not_enabled"):
                    raise  # nothing about a record: every single call would be refused the same way
                BATCH_FALLBACKS.inc()
                log.warning("dns.batch_refused", zone_id=zone_id, code=error.code, error=error.message)
                await self._singles(zone_id, chunk, current, outcome, refused, final=final)
            else:
                _absorb(current, envelope.get("result") or {}, chunk)
            await self._store(zone_id, current, touched, complete=aside and n == len(chunks))

    async def _singles(
        self,
        zone_id: str,
        chunk: DnsPlan,
        current: Current,
        outcome: Outcome,
        refused: dict[str, CfError],
        *,
        final: bool,
    ) -> None:
        contradicted = False
        ops: list[Delete | Patch | Post] = [*chunk.deletes, *chunk.patches, *chunk.posts]
        for op in ops:
            outcome.writes += 1
            try:
                if isinstance(op, Patch):
                    res = await self._api.request(
                        "PATCH", RECORDS + "/{record_id}", body=op.body, zone_id=zone_id, record_id=op.record_id
                    )
                    _replace(current, op.name, DnsRecord.from_api(res["result"]))
                elif isinstance(op, Delete):
                    try:
                        await self._api.request(
                            "DELETE", RECORDS + "/{record_id}", zone_id=zone_id, record_id=op.record_id
                        )
                    except CfApiError as error:
                        # Already gone (an earlier attempt got through, or 81044 "Record does not exist."): fine.
                        if error.status != 404 and error.kind != "stale":
                            raise
                    _drop(current, op.name, op.record_id)
                else:
                    res = await self._api.request("POST", RECORDS, body=op.body, zone_id=zone_id)
                    _replace(current, op.name, DnsRecord.from_api(res["result"]))
            except CfTransientError as error:
                if final:
                    raise
                raise Reread(str(error)) from error
            except CfApiError as error:
                if error.kind in ("permission", "not_enabled"):
                    raise  # the token, not the record: the job fails with the missing permission named
                # A conflict (81053/81054/81057/81058, any 409) or a record that is gone (81044) contradicts the
                # observed copy: the plan sees the truth after a fresh read.
                conflict = error.kind == "conflict"
                contradicted = contradicted or conflict or error.kind == "stale"
                if error.kind == "stale":
                    # The record our copy names is gone: forget it, so the next plan writes it anew.
                    _drop(current, op.name, getattr(op, "record_id", ""))
                    if final:
                        outcome.errors.append(
                            CfError(
                                code=error.code,
                                message=f"the record vanished while it was written ({error.message}); written again "
                                "at the next change or drift check",
                                hostname=op.name,
                                kind="invalid",
                            )
                        )
                    continue
                if conflict:
                    CONFLICTS.labels("dns").inc()
                kind = error.kind if error.kind in ("conflict", "quota") else "invalid"
                problem = CfError(code=error.code, message=error.explain(), hostname=op.name, kind=kind)
                outcome.errors.append(problem)
                if not conflict and error.status == 400:
                    # A refusal of this record (validation, quota) is left out of the zone's next batches. A conflict
                    # is seen by the plan after a fresh read; a 401/403 says nothing about the record.
                    refused[fingerprint(op)] = problem
        if contradicted and not final:
            # Cloudflare holds a record our observed copy does not know about: read again and re-plan.
            raise Reread("Cloudflare reported a conflicting record the observed state did not show")


def placed(
    records: Sequence[DesiredRecord], job_zone: str, zones: dict[str, str]
) -> tuple[list[Wanted], list[CfError]]:
    """The records that may be written in the job's zone, and a per-record error for each of the others: a name
    that fails the name check (``invalid``) or that the job's zone does not hold (``zone``)."""
    wanted: list[Wanted] = []
    errors: list[CfError] = []
    for record in records:
        problem = name_problem(record.name)
        if problem is not None:
            errors.append(CfError(message=problem, hostname=record.name, kind="invalid"))
            continue
        problem = zone_problem(record.name, job_zone, zones)
        if problem is not None:
            errors.append(CfError(message=problem, hostname=record.name, kind="zone"))
            continue
        wanted.append(Wanted(bare(record.name), record.tunnel_id, record.adopt))
    return wanted, errors


def _drop(current: Current, name: str, record_id: str) -> None:
    current[name] = [r for r in current.get(name, []) if r.id != record_id]


def _replace(current: Current, old_name: str, record: DnsRecord) -> None:
    _drop(current, old_name, record.id)
    _drop(current, record.name, record.id)
    current[record.name].append(record)


def _absorb(current: Current, result: dict[str, Any], chunk: DnsPlan) -> None:
    """Fold a batch's answer into the observed copy (deletes by id; patches and posts as returned)."""
    for delete in chunk.deletes:
        _drop(current, delete.name, delete.record_id)
    for raw in [*(result.get("patches") or []), *(result.get("puts") or []), *(result.get("posts") or [])]:
        record = DnsRecord.from_api(raw)
        _replace(current, record.name, record)
