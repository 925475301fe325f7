"""Reads of the read model the reconciler writes (``AgentRecord``, ``RuleRecord``) plus the API's own history.

The API never writes these documents. A document that does not decode (a newer writer, a bug) is logged and
skipped rather than failing a whole listing: one bad record must not hide every other agent or rule.
Index keys are read whatever Redis type the writer chose (set, sorted set, hash or list), since the
index is a detail of the reconciler's storage, not of the contract.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
import structlog

from flareport_common.keys import Keys
from flareport_common.readmodel import AgentRecord, CommandRecord, RuleRecord
from flareport_common.replies import text

log = structlog.get_logger("flareport.api.readstore")
T = TypeVar("T")
HISTORY_LIMIT = 200


async def index_members(redis: aioredis.Redis, key: str) -> list[str]:
    kind = text(await redis.type(key))
    if kind == "set":
        members: Any = await redis.smembers(key)
    elif kind == "zset":
        members = await redis.zrange(key, 0, -1)
    elif kind == "hash":
        members = await redis.hkeys(key)
    elif kind == "list":
        members = await redis.lrange(key, 0, -1)
    else:
        return []
    return sorted({text(m) for m in members})


def _decode(raw: Any, kind: type[T], where: str) -> T | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        log.warning("readstore.undecodable", key=where, error=str(exc))
        return None


async def agent(redis: aioredis.Redis, keys: Keys, agent_id: str) -> AgentRecord | None:
    return (await _agents_with_contact(redis, keys, [agent_id]))[0]


def agent_from(raw: Any, keys: Keys, agent_id: str) -> AgentRecord | None:
    """The agent's record from the raw value of ``keys.agent(agent_id)`` read with other commands."""
    return _decode(raw, AgentRecord, keys.agent(agent_id))


async def agents(redis: aioredis.Redis, keys: Keys) -> list[AgentRecord]:
    ids = await index_members(redis, keys.agents_index)
    if not ids:
        return []
    return [record for record in await _agents_with_contact(redis, keys, ids) if record is not None]


async def _agents_with_contact(redis: aioredis.Redis, keys: Keys, ids: list[str]) -> list[AgentRecord | None]:
    """The records of ``ids`` (None where absent or undecodable), each with its latest contact and sequence number
    (``with_contact``), in one round trip. A pipeline of GETs rather than MGET: the keys may live in different Redis
    Cluster slots."""
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.get(keys.agent(i))
        pipe.get(keys.agent_last_seq(i))
    pipe.zmscore(keys.agents_last_seen, ids)
    *reads, contacts = await pipe.execute()
    return [
        with_contact(_decode(raw, AgentRecord, keys.agent(i)), contact, seq)
        for i, raw, seq, contact in zip(ids, reads[0::2], reads[1::2], contacts, strict=True)
    ]


def with_contact(record: AgentRecord | None, contact: Any, seq: Any = None) -> AgentRecord | None:
    """The record with the agent's latest contact and sequence number. The reconciler writes the record only when
    something besides those changed: it keeps the time of every contact in the offline detection's sorted set
    (``Keys.agents_last_seen``, epoch seconds), and the API the highest event sequence number it accepted
    (``Keys.agent_last_seq``). The newer of each pair is the agent's."""
    if record is None:
        return None
    changes: dict[str, Any] = {}
    if contact is not None:
        at = datetime.fromtimestamp(float(contact), UTC)
        if record.last_seen is None or at > record.last_seen:
            changes["last_seen"] = at
    accepted = _int_or_none(seq)
    if accepted is not None and accepted > record.last_seq:
        changes["last_seq"] = accepted
    return msgspec.structs.replace(record, **changes) if changes else record


def _int_or_none(raw: Any) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:  # not the API's own integer: shown as the record has it
        return None


async def rules(redis: aioredis.Redis, keys: Keys) -> list[RuleRecord]:
    rule_keys = await index_members(redis, keys.rules_index)
    if not rule_keys:
        return []
    raws = await _get_many(redis, [keys.rule(k) for k in rule_keys])
    found = (_decode(raw, RuleRecord, keys.rule(k)) for k, raw in zip(rule_keys, raws, strict=True))
    return [record for record in found if record is not None]


async def _get_many(redis: aioredis.Redis, names: list[str]) -> list[Any]:
    # One pipeline of GETs rather than MGET: the keys may live in different Redis Cluster slots.
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.get(name)
    return list(await pipe.execute())


async def command_history(redis: aioredis.Redis, keys: Keys, agent_id: str, limit: int = 50) -> list[CommandRecord]:
    key = keys.agent_command_history(agent_id)
    raws = await redis.lrange(key, 0, limit - 1)
    found = (_decode(raw, CommandRecord, key) for raw in raws)
    return [record for record in found if record is not None]


async def heartbeats(redis: aioredis.Redis, keys: Keys, agent_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """Recent heartbeats if a writer keeps them (a capped list of JSON objects, newest first)."""
    key = keys.agent_heartbeats(agent_id)
    if text(await redis.type(key)) != "list":
        return []
    raws = await redis.lrange(key, 0, limit - 1)
    found = (_decode(raw, dict[str, Any], key) for raw in raws)
    return [item for item in found if item is not None]
