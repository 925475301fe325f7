-- Extends a target's lease only while the caller still holds it (flareport_dns_worker.lease).
-- KEYS: lease_key   the lease (its value: the holder's token)
-- ARGV: token       the caller's token
--       lease_ms    the lease's new time to live
-- Returns 1 when renewed, 0 when the lease is gone or someone else holds it.
local lease_key = KEYS[1]
local token, lease_ms = ARGV[1], ARGV[2]

if redis.call('GET', lease_key) == token then return redis.call('PEXPIRE', lease_key, lease_ms) end
return 0
