"""The read model the reconciler writes (``AgentRecord``, ``RuleRecord``), with optimistic transactions.

Several replicas (and several handlers in one replica) update the same documents: a heartbeat and an enrolment
of one agent, a hostname refresh and a job result of one rule. Every update is a read-modify-write under WATCH,
retried when another writer got there first, so no update is lost and no lock can be left behind by a crash.
Every write of a document also raises the read-model counter (``Keys.readmodel_version``) in the same transaction
or script, which is all the web UI's live updates read to notice a change.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import WatchError

from flareport_common.keys import Keys
from flareport_common.messages.cfresults import JobResult
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.settings import ReconcilerSettings
from flareport_reconciler.resolution import AgentView
from flareport_reconciler.rules import DocsChange, result_change
from flareport_reconciler.scripts import BUMP_VERSION

TX_RETRIES = Counter(
    "flareport_reconciler_transaction_retries_total",
    "Optimistic transactions retried because another writer changed a watched key, by what was written.",
    ["what"],
)

_agent_decoder = msgspec.json.Decoder(AgentRecord)
_rule_decoder = msgspec.json.Decoder(RuleRecord)
_encoder = msgspec.json.Encoder()

# Agents whose rules are no longer served (planning treats their claims as gone).
RETIRED = ("decommissioning", "decommissioned", "removed")


def text(value: Any) -> str:
    """A Redis reply as text (replies are bytes; the typing says bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


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


@dataclass(frozen=True, slots=True)
class PolicyDefaults:
    """What every agent may publish beyond the default policy (the reconciler's settings); each agent's record
    can only widen it."""

    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings: ReconcilerSettings) -> PolicyDefaults:
        return cls(settings.agent_allow_wildcard, settings.agent_allow_apex, settings.agent_origin_allow)


# Set once at start-up (``configure_policy``) rather than passed down: the settings are one per process, and
# every caller of ``view_of`` (planning, refreshes) must see the same policy.
_policy = PolicyDefaults()


def configure_policy(defaults: PolicyDefaults) -> None:
    global _policy
    _policy = defaults


def enrolled(record: AgentRecord) -> bool:
    """Did an admin enrol this agent? Enrolment names its tunnel (or the tunnel it adopts gets its id once
    ensured); a tunnel is never set from what an agent sends. An offline agent stays enrolled."""
    return record.tunnel_id is not None or record.tunnel_name is not None


def view_of(record: AgentRecord, defaults: PolicyDefaults | None = None) -> AgentView | None:
    if record.status in RETIRED:
        return None
    policy = _policy if defaults is None else defaults
    return AgentView(
        agent_id=record.agent_id,
        tunnel_id=record.tunnel_id,
        allowed_zones=record.allowed_zones,
        allowed_suffixes=record.allowed_suffixes,
        allow_wildcard=record.allow_wildcard or policy.allow_wildcard,
        allow_apex=record.allow_apex or policy.allow_apex,
        origin_allow=policy.origin_allow.union(record.origin_allow),
        enrolled=enrolled(record),
    )


async def agent_views(
    redis: aioredis.Redis, keys: Keys, agent_ids: Iterable[str], defaults: PolicyDefaults | None = None
) -> dict[str, AgentView]:
    ids = sorted(set(agent_ids))
    if not ids:
        return {}
    raws = await redis.mget([keys.agent(a) for a in ids])
    views: dict[str, AgentView] = {}
    for raw in raws:
        record = decode_agent(raw_bytes(raw))
        view = view_of(record, defaults) if record is not None else None
        if view is not None:
            views[view.agent_id] = view
    return views


async def get_agent(redis: aioredis.Redis, keys: Keys, agent_id: str) -> AgentRecord | None:
    return decode_agent(raw_bytes(await redis.get(keys.agent(agent_id))))


def version_seed() -> int:
    """A random start for the read-model counter, used only by the write creating it (``Keys.readmodel_version``)."""
    return secrets.randbits(52)


def bump_version(pipe: aioredis.client.Pipeline, keys: Keys) -> None:
    """Queue the rise of the read-model counter in ``pipe``'s transaction, next to the write the UI must notice."""
    pipe.set(keys.readmodel_version, version_seed(), nx=True)
    pipe.incr(keys.readmodel_version)


AgentUpdate = Callable[[AgentRecord | None], AgentRecord | None]


async def update_agent(redis: aioredis.Redis, keys: Keys, agent_id: str, change: AgentUpdate) -> AgentRecord | None:
    """Apply ``change`` to the agent's record atomically; ``change`` returns None to leave it as it is."""
    key = keys.agent(agent_id)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                current = decode_agent(raw_bytes(await pipe.get(key)))
                new = change(current)
                if new is None:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return current
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, encode(new))
                pipe.sadd(keys.agents_index, agent_id)
                bump_version(pipe, keys)
                await pipe.execute()
                return new
            except WatchError:
                TX_RETRIES.labels("agent").inc()
                continue


# KEYS: rules index, read-model counter, then n document keys. ARGV: n rule keys, n expected values ('' = absent),
# n writes ('' = leave as is, '-' = delete, else the new document), the counter's seed. Nothing is written unless
# every document is as expected; the counter rises with the writes.
COMPARE_AND_SET = (
    BUMP_VERSION
    + """
local n = #KEYS - 2
for i = 1, n do
  if (redis.call('GET', KEYS[i + 2]) or '') ~= ARGV[n + i] then return 0 end
end
local changed = false
for i = 1, n do
  local w = ARGV[2 * n + i]
  if w == '-' then
    redis.call('DEL', KEYS[i + 2])
    redis.call('SREM', KEYS[1], ARGV[i])
    changed = true
  elseif w ~= '' then
    redis.call('SET', KEYS[i + 2], w)
    redis.call('SADD', KEYS[1], ARGV[i])
    changed = true
  end
end
if changed then bump(KEYS[2], ARGV[3 * n + 1]) end
return 1
"""
)


async def update_rules(redis: aioredis.Redis, keys: Keys, rule_keys: Iterable[str], change: DocsChange) -> None:
    """Atomically replace the documents of ``rule_keys``: ``change`` maps current docs to new ones (None deletes)."""
    names = sorted(set(rule_keys))
    if not names:
        return
    doc_keys = [keys.rule(k) for k in names]
    # Optimistic, two round trips per attempt: read, then a compare-and-set script applies the writes only if every
    # document is still as read (as WATCH would, without WATCH's extra round trip and per-key commands).
    while True:
        raws = await redis.mget(doc_keys)
        current = {k: decode_rule(raw_bytes(r)) for k, r in zip(names, raws, strict=True)}
        new = change(current)
        writes: list[str | bytes] = []
        for name in names:
            doc = new.get(name, current[name])
            if doc is None:
                writes.append(b"-" if current[name] is not None else b"")
            else:
                writes.append(encode(doc) if doc != current[name] else b"")
        if not any(writes):
            return
        expected = [raw_bytes(r) or b"" for r in raws]
        index = (keys.rules_index, keys.readmodel_version)
        seed = version_seed()
        if await redis.eval(COMPARE_AND_SET, len(names) + 2, *index, *doc_keys, *names, *expected, *writes, seed):
            return
        TX_RETRIES.labels("rules").inc()


async def apply_result(redis: aioredis.Redis, keys: Keys, result: JobResult, members: list[str]) -> None:
    """A job's result on the documents of the rules it carried (``rules.result_change``)."""
    change = result_change(result)
    if change is not None and members:
        await update_rules(redis, keys, members, change)
