-- Gives a reserved password check back (the password was right): never below zero, never creating the key again.
-- KEYS: failures_key   the address's attempts in the current window
-- ARGV: (none)
-- Returns 0.
local failures_key = KEYS[1]

local count = tonumber(redis.call('GET', failures_key) or '0')
if count > 0 then redis.call('DECR', failures_key) end
return 0
