-- Stops every replica's Cloudflare calls for a while (a 429's Retry-After); only ever moves the pause later.
-- KEYS: pause_key   Redis time in ms until which nobody may call
-- ARGV: pause_ms    how long to pause from now
-- Returns the Redis time in ms the pause lasts until at least.
local pause_key = KEYS[1]
local pause_ms = tonumber(ARGV[1])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + pause_ms
local cur = tonumber(redis.call('GET', pause_key) or '0')
if untl > cur then redis.call('SET', pause_key, tostring(untl), 'PX', pause_ms + 1000) end
return untl
