"""Step 2 of every change: dirty hostnames resolved into rule documents, touched targets and a cleared mark.

A refresh reads, per hostname, its claims, its state (the targets it was part of and the documents it wrote
last) and its dirty mark, resolves the claims, and writes the documents and the new state. Several replicas may
refresh one hostname at once (the replica that wrote a start and the one that wrote the stop a moment later,
each right after its own transaction), so the writes are a compare-and-set over everything the refresh read
(``write_refresh.lua``): the claims, the state, the mark and the documents (a write of a document also raises the
read-model counter the web UI watches, ``Keys.readmodel_version``). Were they not, a refresh that read the
claims before the stop could write its document after the stop's refresh had removed it and cleared the mark,
and that document would stay with no claim and no mark to correct it. A lost race reads again and resolves
again; agents' views (tunnel, allow-lists) are covered by the mark, which every change of them sets again.

Crash safety: the state is written with the documents (so the next refresh knows which documents to delete)
and carries the targets whose part changed as ``pending`` until they were touched; only then does
``finish_refresh.lua`` drop ``pending`` and the mark. A replica dying in between leaves the mark, and the sweeper's
refresh touches the pending targets.

Round trips: the read, the agents not at hand, the documents and the catalog (all but the agents none when the
caller read them in its transaction, as the inventory's does: ``queue_prefetch``), the compare-and-set, then (the
spine's ``touch``) the targets, and the finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter

from flareport_common.keys import Keys
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.readversion import seed as version_seed
from flareport_reconciler.accessgroups import AccessGroups
from flareport_reconciler.agents import view_of
from flareport_reconciler.claimstore import decode_hash
from flareport_reconciler.records import TX_RETRIES, agent_views, decode_rule, raw_bytes
from flareport_reconciler.records import encode as encode_doc
from flareport_reconciler.refreshscripts import (
    HostnameFinish,
    HostnameWrite,
    finish_refresh,
    queue_read_hostnames,
    write_refresh,
)
from flareport_reconciler.refreshscripts import read_hostnames as read_hostnames_script
from flareport_reconciler.resolution import AccessCatalog, AgentView, resolve_hostname
from flareport_reconciler.rules import doc_key, merge_docs, template
from flareport_reconciler.scripts import DocumentWrite, Written
from flareport_reconciler.targets import Target, parse_all, parts_of

ACCESS_HELD = Counter(
    "flareport_reconciler_access_held_total",
    "Rules newly held back (nothing published for their hostname) by an Access label that cannot be resolved, by "
    "the label at fault ('held back': another rule of the hostname).",
    ["label"],
)

_encoder = msgspec.json.Encoder()


class HostnameState(msgspec.Struct, kw_only=True):
    # target -> fingerprint of this hostname's part of it: a change touches only targets whose part changed.
    targets: dict[str, str] = msgspec.field(default_factory=dict)
    docs: tuple[str, ...] = ()
    # Targets whose part changed and which may not have been touched yet (the refresh is not finished).
    pending: tuple[str, ...] = ()


_state_decoder = msgspec.json.Decoder(HostnameState)


@dataclass(frozen=True, slots=True)
class HostnameRead:
    """What a refresh resolves a hostname from, as Redis returned it (see ``lua/read_hostnames.lua``)."""

    claims: list[Any]  # flat field, value list
    state: bytes | None
    score: bytes | None


def read_hostnames_command(pipe: aioredis.client.Pipeline, keys: Keys, hostnames: Sequence[str]) -> None:
    """Queue the read of ``hostnames`` (in a transaction, or in a pipeline); decode its reply with ``parse_read``."""
    queue_read_hostnames(pipe, keys, hostnames)


def queue_prefetch(pipe: aioredis.client.Pipeline, keys: Keys, hostnames: Sequence[str]) -> None:
    """Queue, after the hostnames' read, what their refresh reads next: the documents named after them (as most
    are) and the Access catalog (three replies; ``Prefetched.parse``). Read in the source step's transaction, the
    refresh that follows needs no wait of its own before its compare-and-set (which checks the documents)."""
    pipe.mget([keys.rule(h) for h in hostnames])
    pipe.hgetall(keys.access_groups)
    pipe.hgetall(keys.access_facts)


@dataclass(frozen=True, slots=True)
class Prefetched:
    """The replies of ``queue_prefetch``: documents by name, and the catalog as Redis returned it."""

    docs: dict[str, Any]
    catalog: tuple[dict[Any, Any], dict[Any, Any]]

    @staticmethod
    def parse(hostnames: Sequence[str], replies: Sequence[Any]) -> Prefetched:
        docs, groups, facts = replies
        return Prefetched(dict(zip(hostnames, docs, strict=True)), (groups, facts))


def parse_read(hostnames: Sequence[str], reply: list[Any]) -> dict[str, HostnameRead]:
    return {h: HostnameRead(r[0], raw_bytes(r[1]), raw_bytes(r[2])) for h, r in zip(hostnames, reply, strict=True)}


async def read_hostnames(redis: aioredis.Redis, keys: Keys, hostnames: Sequence[str]) -> dict[str, HostnameRead]:
    reply = await read_hostnames_script(redis, keys, hostnames)
    return parse_read(hostnames, reply)


@dataclass
class _Outcome:
    """One resolution of the hostnames: the writes, the targets to touch, and what finishing expects."""

    touch: set[Target] = field(default_factory=set)
    # Touched targets that must send a job even if their desired version is unchanged (see ``_resolve``).
    force: set[Target] = field(default_factory=set)
    written: dict[str, bytes | None] = field(default_factory=dict)
    final: dict[str, bytes | None] = field(default_factory=dict)
    state_writes: dict[str, bytes] = field(default_factory=dict)
    doc_names: list[str] = field(default_factory=list)
    doc_expected: list[bytes] = field(default_factory=list)
    doc_writes: list[bytes] = field(default_factory=list)

    def writes_anything(self) -> bool:
        return any(self.state_writes.values()) or any(self.doc_writes)


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A refresh written: the targets the spine must touch now, and what ``finish`` expects afterwards."""

    names: list[str]
    read: Mapping[str, HostnameRead]
    outcome: _Outcome
    catalog: AccessCatalog  # what the refresh resolved with: the plans right after use it too

    @property
    def touch(self) -> set[Target]:
        return self.outcome.touch

    @property
    def force(self) -> set[Target]:
        """Touched targets that must send a job even if their desired version is unchanged (see ``_resolve``)."""
        return self.outcome.force


class Refresher:
    def __init__(self, redis: aioredis.Redis, keys: Keys, access: AccessGroups) -> None:
        self._redis = redis
        self._keys = keys
        self._access = access

    async def refresh(
        self,
        hostnames: Iterable[str],
        read: Mapping[str, HostnameRead] | None = None,
        record: AgentRecord | None = None,
        prefetched: Prefetched | None = None,
    ) -> Refreshed | None:
        """Resolve ``hostnames`` and write their documents and state; ``read`` holds what they resolve from if
        the caller just read it in its transaction, ``record`` an agent record and ``prefetched`` documents and
        the catalog read there too (no need to read any again). None when there is nothing to refresh. The caller
        touches the targets, then ``finish``es.
        """
        names = sorted(set(hostnames))
        if not names:
            return None
        if read is None or not all(h in read for h in names):
            read, prefetched = await read_hostnames(self._redis, self._keys, names), None
        while True:
            outcome, catalog = await self._resolve(names, read, record, prefetched)
            if not outcome.writes_anything() or await self._write(names, read, outcome):
                return Refreshed(names, read, outcome, catalog)
            TX_RETRIES.labels("refresh").inc()
            # Something changed since the read: read it all again, agents, documents and catalog too.
            read, record, prefetched = await read_hostnames(self._redis, self._keys, names), None, None

    async def finish(self, refreshed: Refreshed) -> None:
        """After the targets were touched: drop the pending targets and the marks (see ``_finish``)."""
        await self._finish(refreshed.names, refreshed.read, refreshed.outcome)

    async def _resolve(
        self,
        names: list[str],
        read: Mapping[str, HostnameRead],
        record: AgentRecord | None,
        prefetched: Prefetched | None,
    ) -> tuple[_Outcome, AccessCatalog]:
        per_host = {h: decode_hash(read[h].claims) for h in names}
        previous = {h: _decode_state(read[h].state) for h in names}
        wanted = {c.agent_id for host in per_host.values() for c in host.claims if c.agent_id}
        known: dict[str, AgentView] = {}
        if record is not None and record.agent_id in wanted:
            wanted.discard(record.agent_id)
            view = view_of(record)
            if view is not None:
                known[record.agent_id] = view
        # The documents these hostnames had and most likely have again (a rule's document is named after its
        # hostname, or after it and a path, as before), read with the agents and the Access catalog: one wait.
        fetched: dict[str, Any] = dict(prefetched.docs) if prefetched is not None else {}
        likely = sorted(set(names).union(*(state.docs for state in previous.values())) - fetched.keys())
        if prefetched is not None and not wanted and not likely:  # everything at hand (a lone change): no wait
            viewed, catalog, likely_raws = {}, self._access.decode_catalog(*prefetched.catalog), []
        else:
            viewed, catalog, likely_raws = await asyncio.gather(
                agent_views(self._redis, self._keys, wanted),
                self._catalog(prefetched),
                self._redis.mget([self._keys.rule(n) for n in likely]) if likely else _nothing(),
            )
        agents = {**viewed, **known}
        fetched.update(zip(likely, likely_raws, strict=True))
        outcome = _Outcome()
        all_docs: dict[str, RuleRecord] = {}
        held: dict[str, str] = {}  # document -> the label (or "held back") of an Access error
        stale: set[str] = set()
        touched_by: dict[str, set[Target]] = {}  # document -> the targets its hostname touches now
        for hostname in names:
            host = per_host[hostname]
            decisions = resolve_hostname(host.effective, agents, assigned=host.assigned, catalog=catalog)
            docs = {doc_key(d): template(d) for d in decisions}
            held.update({doc_key(d): (d.reason or "").split(":", 1)[0] for d in decisions if d.verdict == "blocked"})
            all_docs.update(docs)
            before = previous[hostname]
            stale |= set(before.docs) - docs.keys()
            now_targets = {str(t): fingerprint for t, fingerprint in parts_of(decisions).items()}
            parts = now_targets.keys() | before.targets.keys()
            changed = {t for t in parts if now_targets.get(t) != before.targets.get(t)}
            pending = changed | set(before.pending)
            pending_targets = set(parse_all(pending))
            outcome.touch |= pending_targets
            touched_by.update(dict.fromkeys(docs, pending_targets))
            final = HostnameState(targets=now_targets, docs=tuple(sorted(docs)))
            written = msgspec.structs.replace(final, pending=tuple(sorted(pending)))
            outcome.final[hostname] = _encode_state(final)
            outcome.written[hostname] = _encode_state(written)
            new_raw = outcome.written[hostname]
            if new_raw != read[hostname].state:
                outcome.state_writes[hostname] = b"-" if new_raw is None else new_raw
        names_docs = sorted(all_docs.keys() | stale)
        if names_docs:
            missing = [n for n in names_docs if n not in fetched]
            if missing:
                fetched.update(zip(missing, await self._redis.mget([self._keys.rule(n) for n in missing]), strict=True))
            raws = [fetched[n] for n in names_docs]
            current = {n: decode_rule(raw_bytes(r)) for n, r in zip(names_docs, raws, strict=True)}
            new = merge_docs(all_docs)(current)
            for name, raw in zip(names_docs, raws, strict=True):
                doc = new.get(name, current[name])
                if doc is None:
                    write = b"-" if current[name] is not None else b""
                else:
                    write = encode_doc(doc) if doc != current[name] else b""
                    if write and doc.status == "pending":
                        # A part of this rule waits for a job result. Another replica may already have planned
                        # the target from the claims (they are written before the documents) and had its result
                        # before this document existed: the desired version is then unchanged, no job would
                        # come, and the document would stay pending. A forced touch sends the job anyway (the
                        # dns-worker answers it without calls when nothing differs).
                        outcome.force |= touched_by.get(name, set())
                if write and doc is not None and name in held:
                    ACCESS_HELD.labels(held[name]).inc()
                outcome.doc_names.append(name)
                outcome.doc_expected.append(raw_bytes(raw) or b"")
                outcome.doc_writes.append(write)
        return outcome, catalog

    async def _catalog(self, prefetched: Prefetched | None) -> AccessCatalog:
        if prefetched is None:
            return await self._access.catalog()
        return self._access.decode_catalog(*prefetched.catalog)

    async def _write(self, names: list[str], read: Mapping[str, HostnameRead], outcome: _Outcome) -> bool:
        hosts = [
            HostnameWrite(h, read[h].score, read[h].state, read[h].claims, outcome.state_writes.get(h, b""))
            for h in names
        ]
        docs = zip(outcome.doc_names, outcome.doc_expected, outcome.doc_writes, strict=True)
        documents = [DocumentWrite(name, expected, write) for name, expected, write in docs]
        return await write_refresh(self._redis, self._keys, hosts, documents, version_seed()) == Written.WRITTEN

    async def _finish(self, names: list[str], read: Mapping[str, HostnameRead], outcome: _Outcome) -> None:
        """Drop the pending targets (touched now) and the marks, where nobody changed anything meanwhile."""
        todo = [h for h in names if read[h].score is not None or outcome.written[h] != outcome.final[h]]
        if not todo:
            return
        hosts = [HostnameFinish(h, read[h].score, read[h].claims, outcome.written[h], outcome.final[h]) for h in todo]
        await finish_refresh(self._redis, self._keys, hosts)


async def _nothing() -> list[Any]:
    return []


def _decode_state(raw: bytes | None) -> HostnameState:
    return _state_decoder.decode(raw) if raw else HostnameState()


def _encode_state(state: HostnameState) -> bytes | None:
    """A state worth keeping, encoded; None when there is nothing in it (the key is deleted)."""
    return _encoder.encode(state) if state.docs or state.targets or state.pending else None
