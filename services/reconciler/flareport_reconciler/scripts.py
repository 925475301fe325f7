"""The reconciler's Lua scripts for claims, planning, rule documents and grace deletions, one typed wrapper each.

The scripts are files (``lua/<name>.lua``, their arguments named in their header); these wrappers are the only
code that knows their KEYS/ARGV order. The refresh's scripts are in ``refreshscripts``, the coalescing scripts'
wrappers are ``coalesce.Coalescer``'s methods.

Scripts queued in pipelines and transactions are sent with EVAL (not EVALSHA): inside MULTI a script missing from
the server's cache would fail alone after the other writes had been applied, and a registered script object costs
a SCRIPT EXISTS round trip per pipeline. Redis caches the compiled script by its hash either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis.asyncio as aioredis

from flareport_common import lua
from flareport_common.keys import Keys

_MARK_DIRTY = lua.load("flareport_reconciler", "mark_dirty")
_WRITE_CLAIMS = lua.load("flareport_reconciler", "write_claims")
_READ_INVENTORY = lua.load("flareport_reconciler", "read_inventory")
_READ_CLAIMS_HASHES = lua.load("flareport_reconciler", "read_claims_hashes")
_FORGET_UNCLAIMED = lua.load("flareport_reconciler", "forget_unclaimed")
_WRITE_RULES = lua.load("flareport_reconciler", "write_rules")
_WRITE_AGENT = lua.load("flareport_reconciler", "write_agent")
_DELETE_DUE = lua.load("flareport_reconciler", "delete_due")


class Written(IntEnum):
    """What a compare-and-set script (``write_rules``, ``write_agent``, ``refreshscripts.write_refresh``) answers."""

    CHANGED = 0  # something read has changed since: nothing was written, read again
    WRITTEN = 1
    HEARD = 2  # ``write_agent`` with ``silent_before``: the agent was heard since; nothing was written


class DueDeletion(IntEnum):
    """What ``delete_due.lua`` answers."""

    SKIPPED = 0  # not due (a restart cancelled it), or the claim is gone already
    DELETED = 1


def mark_dirty(pipe: aioredis.client.Pipeline, keys: Keys, now_ms: int, hostnames: Iterable[str]) -> None:
    """``mark_dirty.lua``: queue the marks of ``hostnames`` at ``now_ms`` (one higher where a mark is not older)."""
    _MARK_DIRTY.eval(pipe, [keys.dirty_hostnames], [now_ms, *hostnames])


@dataclass(frozen=True, slots=True)
class RemovedClaim:
    hostname: str
    claim_id: str
    pending_member: str  # its member in the pending deletions (``claims.pending_member``)


@dataclass(frozen=True, slots=True)
class NewClaim:
    hostname: str
    claim_id: str
    pending_member: str
    claim_json: bytes  # ``claimstore.encode_value``: the script adds the time and owner prefix
    delete_at: float | None  # when its grace period ends (it is then in the pending deletions)
    owner: str
    claimed_at_ms: int
    zone_hostnames: str  # the key of its zone's hostnames set


def write_claims(
    pipe: aioredis.client.Pipeline,
    keys: Keys,
    removed: Sequence[RemovedClaim],
    added: Sequence[NewClaim],
    *,
    agent_hostnames: str | None = None,
    tunnel_hostnames: str | None = None,
) -> None:
    """``write_claims.lua``: queue a change's claims; each new claim's hostname also joins ``agent_hostnames``
    and ``tunnel_hostnames`` (keys of those sets) when given."""
    # An absent set's key is one the script is sure to leave alone, so that every key it may touch is declared.
    key_list = [
        keys.pending_deletions,
        keys.pending_deletions if agent_hostnames is None else agent_hostnames,
        keys.pending_deletions if tunnel_hostnames is None else tunnel_hostnames,
    ]
    args: list[Any] = [len(removed), len(added), int(agent_hostnames is not None), int(tunnel_hostnames is not None)]
    for gone in removed:
        key_list.append(keys.hostname_claims(gone.hostname))
        args += [gone.claim_id, gone.pending_member]
    for claim in added:
        key_list += [keys.hostname_claims(claim.hostname), claim.zone_hostnames]
        due = "" if claim.delete_at is None else claim.delete_at
        args += [claim.hostname, claim.claim_id, claim.pending_member, claim.claim_json, due, claim.owner]
        args.append(claim.claimed_at_ms)
    _WRITE_CLAIMS.eval(pipe, key_list, args)


@dataclass(frozen=True, slots=True)
class InventoryRead:
    values: list[Any]  # the value of each key asked for, in order (None when absent)
    containers: int  # how many containers the agent has known
    hostnames: int  # how many hostnames it claims


async def read_inventory(
    redis: aioredis.Redis, containers_key: str, hostnames_key: str, value_keys: Sequence[str]
) -> InventoryRead:
    """``read_inventory.lua``: the values of ``value_keys`` and the sizes of the agent's two sets, in one command
    (``redis`` may be a pipeline watching them, which runs it at once)."""
    reply = await _READ_INVENTORY.eval(redis, [containers_key, hostnames_key, *value_keys], [])
    return InventoryRead(list(reply[:-2]), int(reply[-2]), int(reply[-1]))


async def read_claims_hashes(redis: aioredis.Redis, keys: Keys, hostnames: Sequence[str]) -> list[list[Any]]:
    """``read_claims_hashes.lua``: the claims hash of each hostname, in order, as flat field, value lists."""
    return list(await _READ_CLAIMS_HASHES.eval(redis, [keys.hostname_claims(h) for h in hostnames], []))


async def forget_unclaimed(
    redis: aioredis.Redis, keys: Keys, index_keys: Sequence[str], hostnames: Sequence[str]
) -> None:
    """``forget_unclaimed.lua``: remove ``hostnames`` from every set of ``index_keys``, each only if it still has
    no claims hash at all."""
    claim_keys = [keys.hostname_claims(h) for h in hostnames]
    await _FORGET_UNCLAIMED.eval(redis, [*index_keys, *claim_keys], [len(index_keys), *hostnames])


class DeleteDue:
    """``delete_due.lua``: remove a claim whose grace period ended, and mark its hostname dirty.

    Registered (EVALSHA, loaded again by redis-py if a restarted Redis lost its cache): it runs on a client, once
    per due claim, never inside a pipeline or MULTI."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_DELETE_DUE.source)

    async def __call__(
        self, keys: Keys, *, hostname: str, claim_id: str, pending_member: str, now: float, mark_ms: int
    ) -> DueDeletion:
        """``DELETED`` if the claim was due at ``now`` (seconds) and still there; its hostname is then marked dirty
        at ``mark_ms``."""
        key_list = [keys.pending_deletions, keys.hostname_claims(hostname), keys.dirty_hostnames]
        args: list[Any] = [pending_member, claim_id, now, mark_ms, hostname]
        return DueDeletion(int(await self._script(keys=key_list, args=args)))


@dataclass(frozen=True, slots=True)
class DocumentWrite:
    rule_key: str
    read: bytes  # the document as read, b"" when absent
    write: bytes  # the document to write, b"" to leave it as it is, b"-" to delete it


async def write_rules(redis: aioredis.Redis, keys: Keys, documents: Sequence[DocumentWrite], seed: int) -> Written:
    """``write_rules.lua``: write the documents only if every one is still as read, raising the read-model
    counter (``seed`` starts it if absent) when anything was written."""
    key_list = [keys.rules_index, keys.readmodel_version, *(keys.rule(d.rule_key) for d in documents)]
    args: list[Any] = [value for d in documents for value in (d.rule_key, d.read, d.write)]
    return Written(int(await _WRITE_RULES.eval(redis, key_list, [*args, seed])))


async def write_agent(
    redis: aioredis.Redis,
    keys: Keys,
    agent_id: str,
    *,
    read: bytes,
    write: bytes,
    seed: int,
    silent_before: float | None = None,
) -> Written:
    """``write_agent.lua``: write the agent's record only if it is still ``read`` (b"" when absent), adding the
    agent to the index and raising the read-model counter (``seed`` starts it if absent); with ``silent_before``,
    only if the agent's last contact (``Keys.agents_last_seen``) is not later either."""
    key_list = [keys.agent(agent_id), keys.agents_index, keys.readmodel_version]
    args: list[str | bytes | int | float] = [agent_id, read, write, seed]
    if silent_before is not None:
        key_list.append(keys.agents_last_seen)
        args.append(repr(silent_before))
    return Written(int(await _WRITE_AGENT.eval(redis, key_list, args)))
