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
_DELETE_DUE = lua.load("flareport_reconciler", "delete_due")


class Written(IntEnum):
    """What a compare-and-set script (``write_rules``, ``refreshscripts.write_refresh``) answers."""

    CHANGED = 0  # something read has changed since: nothing was written, read again
    WRITTEN = 1


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


# The string scripts below are replaced by the files under lua/ and go once no module imports them.
# Raises the read-model counter (``Keys.readmodel_version``) after a script wrote a document the web UI shows;
# ``seed`` (random) starts it only if it is absent, as ``records.bump_version`` does in transactions.
BUMP_VERSION = """
local function bump(key, seed)
  redis.call('SET', key, seed, 'NX')
  redis.call('INCR', key)
end
"""

# Marks hostnames dirty (KEYS: the dirty set; ARGV: the time in ms, then the hostnames). A mark always moves
# (one above the current score if that is not older), so a refresh that read a mark sees any change made after,
# even within the same millisecond: its compare-and-set (``WRITE_REFRESH``) relies on it for agents' changes.
MARK_DIRTY = """
local mark = tonumber(ARGV[1])
for i = 2, #ARGV do
  local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  if score and score >= mark then
    redis.call('ZADD', KEYS[1], score + 1, ARGV[i])
  else
    redis.call('ZADD', KEYS[1], mark, ARGV[i])
  end
end
return 1
"""

# Per hostname (KEYS: the dirty set, then the claims hash and the state key of each hostname; ARGV: the hostnames):
# its claims (HGETALL), its state and its dirty mark's score, which is everything a refresh resolves from.
READ_HOSTNAMES = """
local replies = {}
for i, hostname in ipairs(ARGV) do
  replies[i] = {
    redis.call('HGETALL', KEYS[2 * i]),
    redis.call('GET', KEYS[2 * i + 1]),
    redis.call('ZSCORE', KEYS[1], hostname),
  }
end
return replies
"""

# The check shared by the refresh's two scripts: a claims hash holds exactly the claims a refresh resolved.
# ARGV[a]: the number of claims n, then (claim id, SHA-1 of the claim's JSON) per claim. Returns the verdict and
# the index of the next argument.
_CLAIMS_MATCH = """
local function claims_match(key, a)
  local n = tonumber(ARGV[a])
  local ok = redis.call('HLEN', key) == n
  for i = 1, n do
    if ok then
      local value = redis.call('HGET', key, ARGV[a + 2 * i - 1])
      ok = value ~= false and redis.sha1hex(value) == ARGV[a + 2 * i]
    end
  end
  return ok, a + 1 + 2 * n
end
"""

# A refresh's writes, applied only if nothing it resolved from changed since it read it: per hostname the claims,
# the state and the dirty mark's score (any change of claims or of an agent the hostname's claims name marks it
# again), and every rule document it read. Without the check a refresh that read the claims before another
# replica changed them could write its documents after that replica's refresh, and nothing would correct them.
# KEYS: rules index, dirty set, (claims hash, state key) per hostname, the document keys, the read-model counter.
# ARGV: number of hostnames H, number of documents D; per hostname: hostname, score read ('' = none), state read
# ('' = none), state to write ('' = leave as is, '-' = delete), then the claims (see claims_match); per document:
# rule key, value read ('' = none), value to write ('' = leave as is, '-' = delete); the counter's seed. Returns 1
# if written, else 0. The counter rises only when a document changed (the states are not shown anywhere).
WRITE_REFRESH = (
    _CLAIMS_MATCH
    + BUMP_VERSION
    + """
local H, D = tonumber(ARGV[1]), tonumber(ARGV[2])
local a, states = 3, {}
for h = 1, H do
  local claims, state = KEYS[1 + 2 * h], KEYS[2 + 2 * h]
  if (redis.call('ZSCORE', KEYS[2], ARGV[a]) or '') ~= ARGV[a + 1] then return 0 end
  if (redis.call('GET', state) or '') ~= ARGV[a + 2] then return 0 end
  states[h] = ARGV[a + 3]
  local ok
  ok, a = claims_match(claims, a + 4)
  if not ok then return 0 end
end
local k = 2 + 2 * H
for d = 1, D do
  if (redis.call('GET', KEYS[k + d]) or '') ~= ARGV[a + 3 * d - 2] then return 0 end
end
for h = 1, H do
  local w = states[h]
  if w == '-' then redis.call('DEL', KEYS[2 + 2 * h]) elseif w ~= '' then redis.call('SET', KEYS[2 + 2 * h], w) end
end
local changed = false
for d = 1, D do
  local name, w = ARGV[a + 3 * d - 3], ARGV[a + 3 * d - 1]
  if w == '-' then
    redis.call('DEL', KEYS[k + d])
    redis.call('SREM', KEYS[1], name)
    changed = true
  elseif w ~= '' then
    redis.call('SET', KEYS[k + d], w)
    redis.call('SADD', KEYS[1], name)
    changed = true
  end
end
if changed then bump(KEYS[#KEYS], ARGV[#ARGV]) end
return 1
"""
)

# After the targets were touched: a state still as the refresh wrote it drops its pending targets, and the dirty
# mark is removed if the claims, the mark and the state are still what the refresh resolved (so a newer change
# keeps its mark, and so does a state another refresh wrote and has not finished).
# KEYS: dirty set, (claims hash, state key) per hostname. ARGV: number of hostnames; per hostname: hostname,
# score read ('' = leave the mark alone), state written ('' = none), state when done ('' = none), the claims.
FINISH_REFRESH = (
    _CLAIMS_MATCH
    + """
local a, cleared = 2, 0
for h = 1, tonumber(ARGV[1]) do
  local claims, state = KEYS[2 * h], KEYS[2 * h + 1]
  local hostname, score, written, final = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local ok
  ok, a = claims_match(claims, a + 4)
  local current = redis.call('GET', state) or ''
  if current == written and written ~= final then
    if final == '' then redis.call('DEL', state) else redis.call('SET', state, final) end
    current = final
  end
  if ok and current == final and score ~= '' and (redis.call('ZSCORE', KEYS[1], hostname) or '') == score then
    cleared = cleared + redis.call('ZREM', KEYS[1], hostname)
  end
end
return cleared
"""
)

# Writes a change's claims in one command (a snapshot changes hundreds). KEYS: pending deletions, agent hostnames,
# tunnel hostnames (the last two used only if ARGV[3] / ARGV[4] is '1'), then per removed claim its claims hash,
# then per new claim its claims hash and its zone's hostnames. ARGV: number removed, number new, flags, then
# (hostname, claim id) per removed claim and (hostname, claim id, JSON, delete_at or '', owner, claim time in ms)
# per new claim.
#
# A stored claim is ``<time ms>|<owner>|<JSON>`` (see ``claimstore.py``): the claim order lives in a prefix this
# script writes from the server's arguments, never inside the JSON, which carries agent-controlled data and is
# never parsed here. The time kept is the earliest of the claim's own previous time and every other claim of the
# same owner on the hostname: an owner keeps its place across a restart and across its own container
# recreations (the old container's claim stays through its grace period), so nobody queued behind it takes the
# name in between.
WRITE_CLAIMS = """
local removed, added = tonumber(ARGV[1]), tonumber(ARGV[2])
local SEP = string.char(31)  -- pending_member's separator
for i = 1, removed do
  local hostname, id = ARGV[4 + 2 * i - 1], ARGV[4 + 2 * i]
  redis.call('HDEL', KEYS[3 + i], id)
  redis.call('ZREM', KEYS[1], hostname .. SEP .. id)
end
local a, k = 4 + 2 * removed, 3 + removed
for i = 1, added do
  local hostname, id, new, due = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local owner, at = ARGV[a + 5], tonumber(ARGV[a + 6])
  local claims, zone = KEYS[k + 1], KEYS[k + 2]
  a, k = a + 6, k + 2
  local all = redis.call('HGETALL', claims)
  for j = 1, #all, 2 do
    local t, o = string.match(all[j + 1], '^(%d+)|([^|]*)|')
    if t and (all[j] == id or o == owner) and tonumber(t) < at then at = tonumber(t) end
  end
  redis.call('HSET', claims, id, string.format('%d', at) .. '|' .. owner .. '|' .. new)
  if due == '' then
    redis.call('ZREM', KEYS[1], hostname .. SEP .. id)
  else
    redis.call('ZADD', KEYS[1], due, hostname .. SEP .. id)
  end
  redis.call('SADD', zone, hostname)
  if ARGV[3] == '1' then redis.call('SADD', KEYS[2], hostname) end
  if ARGV[4] == '1' then redis.call('SADD', KEYS[3], hostname) end
end
return 1
"""

# What an agent's inventory change depends on, in one command: the values of KEYS[3..] (its container entries,
# snapshot, pruning floor and record; GET per key, as MGET would take them all as arguments of one call), then
# how many containers it has known and hostnames it claims (SCARD of KEYS[1] and KEYS[2]) for its quotas.
READ_INVENTORY = """
local values = {}
for i = 3, #KEYS do values[i - 2] = redis.call('GET', KEYS[i]) end
values[#KEYS - 1] = redis.call('SCARD', KEYS[1])
values[#KEYS] = redis.call('SCARD', KEYS[2])
return values
"""

# Every claims hash of a set of hostnames in one command: a pipeline of HGETALLs costs the client a command
# (packing, parsing, a timeout) per hostname, which dominated planning a zone or tunnel of many hostnames.
HGETALL_MANY = """
local replies = {}
for i, key in ipairs(KEYS) do replies[i] = redis.call('HGETALL', key) end
return replies
"""

# KEYS: index sets, then the claims hash of each candidate hostname. ARGV: the number of sets, then the candidate
# hostnames (in the order of their claims keys). A hostname leaves every index set only if it has no claim at all:
# a claim written after the planner read it keeps it (and that write adds it to its sets anyway).
FORGET_UNCLAIMED = """
local sets = tonumber(ARGV[1])
for i = 1, #KEYS - sets do
  if redis.call('EXISTS', KEYS[sets + i]) == 0 then
    for j = 1, sets do redis.call('SREM', KEYS[j], ARGV[i + 1]) end
  end
end
return 1
"""
