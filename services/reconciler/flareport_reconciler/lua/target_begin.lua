-- A plan held for a window begins (flareport_reconciler.coalesce): the changes folded in while it waited are
-- about to be read, so they are no longer pending. A change arriving from now on sets pending again and brings
-- one more plan after this one's job.
-- KEYS: state_key   the target's state hash
-- ARGV: token       the caller's plan token
-- Returns 1 when the caller still holds the target, 0 when another replica took it over (nothing changed).
local state_key, token = KEYS[1], ARGV[1]
if redis.call('HGET', state_key, 'inflight') ~= 'plan:' .. token then return 0 end
redis.call('HDEL', state_key, 'pending')
return 1
