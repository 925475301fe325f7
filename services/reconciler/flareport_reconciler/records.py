"""The read model the reconciler writes (``AgentRecord``, ``RuleRecord``), with optimistic transactions.

Several replicas (and several handlers in one replica) update the same documents: a heartbeat and an enrolment
of one agent, a hostname refresh and a job result of one rule. Every update is a read-modify-write under WATCH,
retried when another writer got there first, so no update is lost and no lock can be left behind by a crash.
Every write of a document also raises the read-model counter (``Keys.readmodel_version``) in the same transaction
or script, which is all the web UI's live updates read to notice a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter

from flareport_common import readversion
from flareport_common.keys import Keys
from flareport_common.messages import AgentRegistered
from flareport_common.messages.cfresults import JobResult
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.replies import text
from flareport_reconciler.agents import AgentUpdate, PolicyDefaults, view_of
from flareport_reconciler.resolution import AgentView
from flareport_reconciler.rules import DocsChange, result_change
from flareport_reconciler.scripts import DocumentWrite, Written, write_agent, write_rules

TX_RETRIES = Counter(
    "flareport_reconciler_transaction_retries_total",
    "Optimistic transactions retried because another writer changed a watched key, by what was written.",
    ["what"],
)

_agent_decoder = msgspec.json.Decoder(AgentRecord)
_rule_decoder = msgspec.json.Decoder(RuleRecord)
_encoder = msgspec.json.Encoder()


def raw_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


def decode_agent(raw: bytes | None) -> AgentRecord | None:
    return None if raw is None else _agent_decoder.decode(raw)


def decode_rule(raw: bytes | None) -> RuleRecord | None:
    return None if raw is None else _rule_decoder.decode(raw)


def encode(doc: msgspec.Struct) -> bytes:
    return _encoder.encode(doc)


async def agent_views(
    redis: aioredis.Redis, keys: Keys, agent_ids: Iterable[str], defaults: PolicyDefaults | None = None
) -> dict[str, AgentView]:
    ids = sorted(set(agent_ids))
    if not ids:
        return {}
    return views_of(await redis.mget([keys.agent(a) for a in ids]), defaults)


def views_of(raws: Iterable[Any], defaults: PolicyDefaults | None = None) -> dict[str, AgentView]:
    """Agent records as read (None where there is none) -> the views of the ones that exist."""
    views: dict[str, AgentView] = {}
    for raw in raws:
        record = decode_agent(raw_bytes(raw))
        view = view_of(record, defaults) if record is not None else None
        if view is not None:
            views[view.agent_id] = view
    return views


async def get_agent(redis: aioredis.Redis, keys: Keys, agent_id: str) -> AgentRecord | None:
    return decode_agent(raw_bytes(await redis.get(keys.agent(agent_id))))


async def update_agent(
    redis: aioredis.Redis, keys: Keys, agent_id: str, change: AgentUpdate, *, silent_before: float | None = None
) -> AgentRecord | None:
    """Apply ``change`` to the agent's record atomically; ``change`` returns None to leave it as it is.
    ``silent_before`` (epoch seconds): leave it as it is too if the agent was heard after that (offline detection)."""
    raw = raw_bytes(await redis.get(keys.agent(agent_id)))
    return await _update_agent(redis, keys, agent_id, change, raw, silent_before=silent_before)


async def _update_agent(
    redis: aioredis.Redis,
    keys: Keys,
    agent_id: str,
    change: AgentUpdate,
    raw: bytes | None,
    *,
    silent_before: float | None = None,
) -> AgentRecord | None:
    """``update_agent`` from ``raw``, the record as the caller read it (None: absent). Optimistic like
    ``update_rules``: a compare-and-set script writes the record only if it is still as read, one round trip where
    WATCH, GET and MULTI/EXEC took three (1,000 agents' heartbeats, one each 15 s, made those a large share of the
    reconciler's time in the scale bench)."""
    while True:
        current = decode_agent(raw)
        new = change(current)
        if new is None:
            return current
        seed = readversion.seed()
        written = await write_agent(
            redis, keys, agent_id, read=raw or b"", write=encode(new), seed=seed, silent_before=silent_before
        )
        if written == Written.WRITTEN:
            return new
        if written == Written.HEARD:
            return current
        TX_RETRIES.labels("agent").inc()
        raw = raw_bytes(await redis.get(keys.agent(agent_id)))


async def update_rules(redis: aioredis.Redis, keys: Keys, rule_keys: Iterable[str], change: DocsChange) -> None:
    """Atomically replace the documents of ``rule_keys``: ``change`` maps current docs to new ones (None deletes).
    ``change`` must decide each document from that document alone (``rules.result_change`` does): only the
    documents it changes are compared and written, so one that changed meanwhile but is left as it is does not
    make the others wait."""
    names = sorted(set(rule_keys))
    if not names:
        return
    doc_keys = [keys.rule(k) for k in names]
    # Optimistic, two round trips per attempt: read, then a compare-and-set script applies the writes only if every
    # written document is still as read (as WATCH would, without WATCH's extra round trip and per-key commands).
    # A zone job's result names every hostname of the zone (20,000 in the scale bench) while a result changes the
    # status of the few its batches touched: sending the script every document it read cost megabytes per result.
    while True:
        raws = await redis.mget(doc_keys)
        current = {k: decode_rule(raw_bytes(r)) for k, r in zip(names, raws, strict=True)}
        new = change(current)
        documents: list[DocumentWrite] = []
        for name, raw in zip(names, raws, strict=True):
            doc, before = new.get(name, current[name]), current[name]
            if doc is None:
                if before is not None:
                    documents.append(DocumentWrite(name, raw_bytes(raw) or b"", b"-"))
            elif doc != before:
                documents.append(DocumentWrite(name, raw_bytes(raw) or b"", encode(doc)))
        if not documents:
            return
        if await write_rules(redis, keys, documents, readversion.seed()) == Written.WRITTEN:
            return
        TX_RETRIES.labels("rules").inc()


async def apply_result(redis: aioredis.Redis, keys: Keys, result: JobResult, members: list[str]) -> None:
    """A job's result on the documents of the rules it carried (``rules.result_change``)."""
    change = result_change(result)
    if change is not None and members:
        await update_rules(redis, keys, members, change)


async def record_contact(
    redis: aioredis.Redis,
    keys: Keys,
    agent_id: str,
    at: datetime,
    change: AgentUpdate,
    *,
    forward_only: bool = True,
) -> AgentRecord | None:
    """Contact from the agent: its record changed (``agents.seen``) and its place in the offline detection's set
    moved forward (never back: an older message handled late must not make the agent look silent; a registration
    sets it, ``forward_only=False``). The set is moved in the same round trip as the record is read: it depends on
    nothing read."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.agent(agent_id))
        pipe.zadd(keys.agents_last_seen, {agent_id: at.timestamp()}, gt=forward_only)
        raw, _ = await pipe.execute()
    return await _update_agent(redis, keys, agent_id, change, raw_bytes(raw))


async def record_registration(
    redis: aioredis.Redis, keys: Keys, message: AgentRegistered, change: AgentUpdate
) -> AgentRecord | None:
    """A registration: the record changed (``agents.registered``) and the agent's last contact set to it."""
    return await record_contact(redis, keys, message.agent_id, message.occurred_at, change, forward_only=False)


async def tunnel_owner(redis: aioredis.Redis, keys: Keys, tunnel_id: str) -> str | None:
    """The agent an ensured tunnel belongs to (``Keys.tunnel_agents``)."""
    agent = await redis.hget(keys.tunnel_agents, tunnel_id)
    return None if agent is None else text(agent)


async def set_tunnel_owner(redis: aioredis.Redis, keys: Keys, tunnel_id: str, agent_id: str) -> None:
    await redis.hset(keys.tunnel_agents, tunnel_id, agent_id)


async def forget_tunnel_owner(redis: aioredis.Redis, keys: Keys, tunnel_id: str) -> None:
    await redis.hdel(keys.tunnel_agents, tunnel_id)
