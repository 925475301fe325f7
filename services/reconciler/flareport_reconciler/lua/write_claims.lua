-- Writes a change's claims in one command (flareport_reconciler.claims; a snapshot changes hundreds).
--
-- A stored claim is "<time ms>|<owner>|<claim JSON>" (flareport_reconciler.claimstore): the claim order lives in a
-- prefix this script writes from the server's own arguments, never inside the JSON, which carries agent-controlled
-- data and is never read here. The time kept is the earliest of the claim's own previous time and that of every
-- other claim of the same owner on the hostname: an owner keeps its place across a restart and across its own
-- container recreations (the old container's claim stays through its grace period), so nobody queued behind it
-- takes the name in between.
-- KEYS: pending_deletions              grace deletions (sorted set: pending member -> when due)
--       agent_hostnames                the agent's hostnames (written only if add_to_agent is '1')
--       tunnel_hostnames               the tunnel's hostnames (written only if add_to_tunnel is '1')
--       claims_key...                  per removed claim: its hostname's claims hash
--       (claims_key, zone_hostnames)...  per new claim: its hostname's claims hash, its zone's hostnames
-- ARGV: removed_count, added_count
--       add_to_agent, add_to_tunnel    '1' to add each new claim's hostname to that set
--       (claim_id, pending_member)...  per removed claim
--       (hostname, claim_id, pending_member, claim_json, delete_at, owner, claimed_at_ms)...
--                                      per new claim; delete_at is '' when it has none
-- Returns 1.
local pending_deletions, agent_hostnames, tunnel_hostnames = KEYS[1], KEYS[2], KEYS[3]
local removed_count, added_count = tonumber(ARGV[1]), tonumber(ARGV[2])
local add_to_agent, add_to_tunnel = ARGV[3] == '1', ARGV[4] == '1'
local FIRST_KEY, FIRST_ARG = 4, 5

local removed, added = {}, {}
for i = 1, removed_count do
  local a = FIRST_ARG + 2 * (i - 1)
  removed[i] = {claims_key = KEYS[FIRST_KEY + i - 1], claim_id = ARGV[a], member = ARGV[a + 1]}
end
for i = 1, added_count do
  local k = FIRST_KEY + removed_count + 2 * (i - 1)
  local a = FIRST_ARG + 2 * removed_count + 7 * (i - 1)
  added[i] = {
    claims_key = KEYS[k],
    zone_hostnames = KEYS[k + 1],
    hostname = ARGV[a],
    claim_id = ARGV[a + 1],
    member = ARGV[a + 2],
    claim_json = ARGV[a + 3],
    delete_at = ARGV[a + 4],
    owner = ARGV[a + 5],
    claimed_at_ms = tonumber(ARGV[a + 6]),
  }
end

-- The time and owner of a stored claim's prefix (nil for a value stored before claims had one).
local function prefix_of(value)
  local time_ms, owner = string.match(value, '^(%d+)|([^|]*)|')
  return tonumber(time_ms), owner
end

for _, claim in ipairs(removed) do
  redis.call('HDEL', claim.claims_key, claim.claim_id)
  redis.call('ZREM', pending_deletions, claim.member)
end
for _, claim in ipairs(added) do
  local at = claim.claimed_at_ms
  local stored = redis.call('HGETALL', claim.claims_key)
  for j = 1, #stored, 2 do
    local time_ms, owner = prefix_of(stored[j + 1])
    if time_ms and (stored[j] == claim.claim_id or owner == claim.owner) and time_ms < at then at = time_ms end
  end
  redis.call('HSET', claim.claims_key, claim.claim_id, string.format('%d', at) .. '|' .. claim.owner .. '|' .. claim.claim_json)
  if claim.delete_at == '' then
    redis.call('ZREM', pending_deletions, claim.member)
  else
    redis.call('ZADD', pending_deletions, claim.delete_at, claim.member)
  end
  redis.call('SADD', claim.zone_hostnames, claim.hostname)
  if add_to_agent then redis.call('SADD', agent_hostnames, claim.hostname) end
  if add_to_tunnel then redis.call('SADD', tunnel_hostnames, claim.hostname) end
end
return 1
