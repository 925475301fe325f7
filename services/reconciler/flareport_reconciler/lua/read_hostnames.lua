-- What a refresh resolves each hostname from, in one command (flareport_reconciler.refresh): its claims, its state
-- (the targets it was part of and the documents it wrote last) and the score of its dirty mark.
-- KEYS: dirty                       the dirty-hostnames sorted set
--       (claims_key, state_key)...  per hostname: its claims hash and its state
-- ARGV: hostname...                 the hostnames, in the order of their keys
-- Returns per hostname {claims as a flat field, value list; state or nil; dirty score or nil}.
local dirty = KEYS[1]

local replies = {}
for i, hostname in ipairs(ARGV) do
  local claims_key, state_key = KEYS[2 * i], KEYS[2 * i + 1]
  replies[i] = {
    redis.call('HGETALL', claims_key),
    redis.call('GET', state_key),
    redis.call('ZSCORE', dirty, hostname),
  }
end
return replies
