-- Marks a call admitted under the per-second cap as ended (flareport_dns_worker.ratelimit): from now it counts for
-- one second span more, instead of until its hold. Only a ticket still kept is updated (XX): a call that outlived
-- its hold and was dropped is not counted again.
-- KEYS: recent_key   the cap's sorted set (take_token.lua)
-- ARGV: ticket       the call's ticket
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
