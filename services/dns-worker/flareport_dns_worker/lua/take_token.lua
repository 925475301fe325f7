-- Takes one token from the Cloudflare rate-limit bucket shared by every replica (flareport_dns_worker.ratelimit).
-- Reads Redis' own clock, so replica clocks do not matter.
-- KEYS: bucket_key        the bucket (hash: tokens, at = Redis time in ms of the last refill)
--       pause_key         Redis time in ms until which nobody may call (set after a 429)
-- ARGV: burst             the bucket's size
--       refill_per_ms     tokens added per millisecond
-- Returns 0 when a token was taken, else the milliseconds to wait before trying again.
local bucket_key, pause_key = KEYS[1], KEYS[2]
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', pause_key) or '0')
if pause > now then return pause - now end
local state = redis.call('HMGET', bucket_key, 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + (now - at) * rate)
local ttl = math.ceil(burst / rate) + 1000
if tokens >= 1 then
  redis.call('HSET', bucket_key, 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', bucket_key, ttl)
  return 0
end
redis.call('HSET', bucket_key, 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', bucket_key, ttl)
return math.max(1, math.ceil((1 - tokens) / rate))
