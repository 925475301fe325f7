-- Removes hostnames without any claim from the index sets they were found in (flareport_reconciler.planner), so
-- the indexes do not grow forever. A hostname leaves only if its claims hash is still empty: a claim written after
-- the planner read it keeps it (and that write adds it to its sets anyway).
-- KEYS: index_key...    index_count sets (a zone's hostnames, a tunnel's hostnames...)
--       claims_key...   per candidate hostname: its claims hash
-- ARGV: index_count     how many of KEYS are index sets
--       hostname...     the candidate hostnames, in the order of their claims keys
-- Returns 1.
local index_count = tonumber(ARGV[1])
local FIRST_HOSTNAME = 2

local index_keys, candidates = {}, {}
for i = 1, index_count do index_keys[i] = KEYS[i] end
for i = 1, #KEYS - index_count do
  candidates[i] = {claims_key = KEYS[index_count + i], hostname = ARGV[FIRST_HOSTNAME + i - 1]}
end

for _, candidate in ipairs(candidates) do
  if redis.call('EXISTS', candidate.claims_key) == 0 then
    for _, index_key in ipairs(index_keys) do redis.call('SREM', index_key, candidate.hostname) end
  end
end
return 1
