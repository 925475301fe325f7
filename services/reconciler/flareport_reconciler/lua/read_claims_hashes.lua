-- Every claims hash of a set of hostnames in one command (flareport_reconciler.planner): a pipeline of HGETALLs
-- costs the client a command (packing, parsing, a timeout) per hostname, which dominated planning a zone or tunnel
-- of many hostnames.
-- KEYS: claims_key...   the claims hashes
-- ARGV: (none)
-- Returns per key its fields and values as a flat list (empty for a missing hash).
local replies = {}
for i, claims_key in ipairs(KEYS) do replies[i] = redis.call('HGETALL', claims_key) end
return replies
