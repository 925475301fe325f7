-- A refresh's writes (flareport_reconciler.refresh), applied only if nothing it resolved from changed since it
-- read it: per hostname its claims, its state and its dirty mark's score (any change of the claims, or of an agent
-- the claims name, marks the hostname again), and every rule document it read. Without the check, a refresh that
-- read the claims before another replica changed them could write its documents after that replica's refresh,
-- and nothing would correct them.
-- KEYS: rules_index                 the set of rule keys that have a document
--       dirty                       the dirty-hostnames sorted set
--       (claims_key, state_key)...  per hostname: its claims hash and its state
--       document_key...             per document: the rule document
--       readmodel_version           the read-model counter
-- ARGV: hostname_count, document_count
--       (hostname, score_read, state_read, state_write, claim list)...
--                                   per hostname: its mark's score and its state as read ('' = absent), the state
--                                   to write ('' = leave as is, '-' = delete), its claims as claims_match reads them
--       (rule_key, document_read, document_write)...
--                                   per document: its value as read ('' = absent), the value to write ('' = leave
--                                   as is, '-' = delete)
--       version_seed                the read-model counter's start if it is absent
-- Returns WRITTEN, or CHANGED when something read has changed (nothing is written then). The counter rises only
-- when a document changed: the states are not shown anywhere.
-- uses: claims_match, write_documents
local WRITTEN, CHANGED = 1, 0
local rules_index, dirty, readmodel_version = KEYS[1], KEYS[2], KEYS[#KEYS]
local hostname_count, document_count = tonumber(ARGV[1]), tonumber(ARGV[2])
local version_seed = ARGV[#ARGV]

local hosts, documents = {}, {}
local a = 3
for h = 1, hostname_count do
  local host = {
    claims_key = KEYS[1 + 2 * h],
    state_key = KEYS[2 + 2 * h],
    hostname = ARGV[a],
    score_read = ARGV[a + 1],
    state_read = ARGV[a + 2],
    state_write = ARGV[a + 3],
  }
  host.claims, a = claim_list(a + 4)
  hosts[h] = host
end
for d = 1, document_count do
  documents[d] = {
    key = KEYS[2 + 2 * hostname_count + d],
    rule_key = ARGV[a],
    read = ARGV[a + 1],
    write = ARGV[a + 2],
  }
  a = a + 3
end

for _, host in ipairs(hosts) do
  if (redis.call('ZSCORE', dirty, host.hostname) or '') ~= host.score_read then return CHANGED end
  if (redis.call('GET', host.state_key) or '') ~= host.state_read then return CHANGED end
  if not claims_match(host.claims_key, host.claims) then return CHANGED end
end
for _, document in ipairs(documents) do
  if (redis.call('GET', document.key) or '') ~= document.read then return CHANGED end
end

for _, host in ipairs(hosts) do
  if host.state_write == '-' then
    redis.call('DEL', host.state_key)
  elseif host.state_write ~= '' then
    redis.call('SET', host.state_key, host.state_write)
  end
end
write_documents(documents, rules_index, readmodel_version, version_seed)
return WRITTEN
