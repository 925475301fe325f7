-- A Cloudflare call ended (flareport_dns_worker.ratelimit): under the per-second cap it counts from now for one
-- second span more instead of until its hold, and Cloudflare's `Ratelimit` header of its answer, if it sent one,
-- becomes the standing `take_token.lua` keeps to.
-- KEYS: recent_key      the per-second cap's sorted set (take_token.lua)
--       standing_key    hash: left = calls Cloudflare's standing still allows us, until = Redis time (ms) its window
--                       resets
--       serial_key      the count of calls ever admitted (take_token.lua)
-- ARGV: ticket          the call's ticket ('' when the cap is off)
--       serial          the call's admission serial
--       remaining       the header's requests left ('' when the answer had no readable header)
--       reset_ms        the header's time to the reset, in ms
--       reserve         requests left to everyone else (the dashboard, other tools): never spent by us
-- Only a ticket still kept is updated (XX): a call that outlived its hold and was dropped is not counted again.
local recent_key, standing_key, serial_key = KEYS[1], KEYS[2], KEYS[3]
local ticket, serial = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ticket ~= '' then redis.call('ZADD', recent_key, 'XX', now, ticket) end
if ARGV[3] == '' then return 0 end
local remaining, reset_ms, reserve = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Calls admitted after this one may have reached Cloudflare after it counted: the header does not show them.
local since = math.max(0, tonumber(redis.call('GET', serial_key) or '0') - serial)
local left = remaining - reserve - since
local untl = now + reset_ms
local old = redis.call('HMGET', standing_key, 'left', 'until')
if old[1] and tonumber(old[2]) > now and untl <= tonumber(old[2]) + 1000 then
  -- The same window (its reset is given in whole seconds): answers arrive out of order, so the fewest left wins.
  left = math.min(left, tonumber(old[1]))
  untl = math.max(untl, tonumber(old[2]))
end
redis.call('HSET', standing_key, 'left', tostring(left), 'until', tostring(untl))
redis.call('PEXPIRE', standing_key, math.max(1, untl - now))
return 1
