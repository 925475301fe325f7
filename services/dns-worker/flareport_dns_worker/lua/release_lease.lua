-- Deletes a target's lease only while the caller still holds it (flareport_dns_worker.lease).
-- KEYS: lease_key   the lease (its value: the holder's token)
-- ARGV: token       the caller's token
-- Returns 1 when released, 0 when the lease is gone or someone else holds it.
local lease_key = KEYS[1]
local token = ARGV[1]

if redis.call('GET', lease_key) == token then return redis.call('DEL', lease_key) end
return 0
