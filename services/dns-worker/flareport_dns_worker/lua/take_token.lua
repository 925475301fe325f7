-- Admits one Cloudflare call under the rate limit shared by every replica (flareport_dns_worker.ratelimit): at most
-- `budget` calls in any span of `span_ms`. Reads Redis' own clock, so replica clocks do not matter.
-- KEYS: calls_key         list of the Redis times (ms) of the calls admitted within the last span, oldest first
--       view_key          hash read by the API's status and the reconciler's coalescing window: tokens = calls
--                         that may start now, budget = calls per span, at = Redis time (ms)
--       pause_key         Redis time in ms until which nobody may call (set after a 429)
-- ARGV: budget            calls per span
--       span_ms           the span
-- Returns 0 when the call was admitted, else the milliseconds to wait before trying again.
local calls_key, view_key, pause_key = KEYS[1], KEYS[2], KEYS[3]
local budget, span = tonumber(ARGV[1]), tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', pause_key) or '0')
if pause > now then return pause - now end
-- Calls that left the span no longer count (each entry is dropped once: amortised constant time).
while true do
  local first = redis.call('LINDEX', calls_key, 0)
  if not first or tonumber(first) + span > now then break end
  redis.call('LPOP', calls_key)
end
local n = redis.call('LLEN', calls_key)
if n >= budget then
  -- The call that must leave the span first: the budget-th most recent (more than budget after a lower limit).
  local due = tonumber(redis.call('LINDEX', calls_key, n - budget)) + span
  return math.max(1, due - now)
end
redis.call('RPUSH', calls_key, tostring(now))
redis.call('PEXPIRE', calls_key, span)
redis.call('HSET', view_key, 'tokens', tostring(budget - n - 1), 'budget', tostring(budget), 'at', tostring(now))
redis.call('PEXPIRE', view_key, span)
return 0
