"""Lua scripts of the claims and planning steps.

They are sent with EVAL (not EVALSHA) from pipelines and transactions: inside MULTI a script missing from the
server's cache would fail alone after the other writes had been applied, and a registered script object costs
a SCRIPT EXISTS round trip per pipeline. Redis caches the compiled script by its hash either way.
"""

from __future__ import annotations

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

# Writes a change's claims in one command (a snapshot changes hundreds). KEYS: pending deletions, agent hostnames,
# tunnel hostnames (the last two used only if ARGV[3] / ARGV[4] is '1'), then per removed claim its claims hash,
# then per new claim its claims hash and its zone's hostnames. ARGV: number removed, number new, flags, then
# (hostname, claim id) per removed claim and (hostname, claim id, JSON, delete_at or '') per new claim.
# An existing claim keeps its first claim time (a restart does not lose the hostname to a later claimant); JSON
# escapes quotes inside strings, so the first '"claimed_at":' is the claim's own top-level field.
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
  local claims, zone = KEYS[k + 1], KEYS[k + 2]
  a, k = a + 4, k + 2
  local old = redis.call('HGET', claims, id)
  if old then
    local at = string.match(old, '"claimed_at":([^,}]+)')
    if at then
      new = string.gsub(new, '"claimed_at":[^,}]+', function() return '"claimed_at":' .. at end, 1)
    end
  end
  redis.call('HSET', claims, id, new)
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
