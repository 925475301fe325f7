-- Removes a claim whose grace period ended (flareport_reconciler.background). The pending-deletions score is the
-- claim's due time, kept in step with the claim by write_claims (a rewrite moves or removes it), so the claim's
-- JSON (agent data) is never read here. Taking the member out of the set is what makes one replica the one that
-- deletes it.
-- KEYS: pending_deletions   grace deletions (sorted set: pending member -> when due, in seconds)
--       claims_key          the claim's hostname's claims hash
--       dirty               the dirty-hostnames sorted set
-- ARGV: member              the claim's pending member
--       claim_id            the claim's field in the claims hash
--       now                 the time, in seconds
--       mark                the dirty mark to give the hostname
--       hostname            the claim's hostname
-- Returns DELETED, or SKIPPED: not due (any more: a restart in between cancelled it), or the claim already gone.
local pending_deletions, claims_key, dirty = KEYS[1], KEYS[2], KEYS[3]
local member, claim_id, now, mark, hostname = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local SKIPPED, DELETED = 0, 1

local due = redis.call('ZSCORE', pending_deletions, member)
if not due or tonumber(due) > now then return SKIPPED end
redis.call('ZREM', pending_deletions, member)
if redis.call('HDEL', claims_key, claim_id) == 0 then return SKIPPED end
redis.call('ZADD', dirty, mark, hostname)
return DELETED
