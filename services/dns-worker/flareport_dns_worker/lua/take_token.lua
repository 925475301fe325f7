-- Admits one Cloudflare call under the rate limits shared by every replica (flareport_dns_worker.ratelimit): at
-- most `budget` calls in any span of `span_ms`, and at most `second_budget` in any span of `second_span_ms` (the
-- per-second cap; 0 = none). Reads Redis' own clock, so replica clocks do not matter.
-- KEYS: calls_key         list of the Redis times (ms) of the calls admitted within the longer span, oldest first
--       view_key          hash read by the API's status and the reconciler's coalescing window: tokens = calls
--                         that may start now, budget = calls per span, at = Redis time (ms)
--       pause_key         Redis time in ms until which nobody may call (set after a 429)
-- ARGV: budget            calls per span
--       span_ms           the span
--       second_budget     calls per second span (0: no cap)
--       second_span_ms    the second span
-- Returns 0 when the call was admitted, else the milliseconds to wait before trying again.
local calls_key, view_key, pause_key = KEYS[1], KEYS[2], KEYS[3]
local budget, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local second_budget, second_span = tonumber(ARGV[3]), tonumber(ARGV[4])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', pause_key) or '0')
if pause > now then return pause - now end
-- The list keeps the calls of the longer span (the window's, but for a window shorter than the second span).
local kept = span
if second_budget > 0 and second_span > kept then kept = second_span end
-- Calls that left it no longer count (each entry is dropped once: amortised constant time).
while true do
  local first = redis.call('LINDEX', calls_key, 0)
  if not first or tonumber(first) + kept > now then break end
  redis.call('LPOP', calls_key)
end
local n = redis.call('LLEN', calls_key)
-- A limit of `b` calls per span is full when the b-th most recent call is still within the span; the wait is until
-- that call leaves it (more than b are kept after a lower limit, or for the other span).
local function wait_for(b, s)
  if n < b then return 0 end
  local due = tonumber(redis.call('LINDEX', calls_key, n - b)) + s
  if due > now then return due - now end
  return 0
end
local wait = wait_for(budget, span)
if second_budget > 0 then wait = math.max(wait, wait_for(second_budget, second_span)) end
if wait > 0 then return wait end
redis.call('RPUSH', calls_key, tostring(now))
redis.call('PEXPIRE', calls_key, kept)
-- The window's tokens: exact when the list holds the window's calls only (every window of a second or more).
local tokens = math.max(0, budget - n - 1)
redis.call('HSET', view_key, 'tokens', tostring(tokens), 'budget', tostring(budget), 'at', tostring(now))
redis.call('PEXPIRE', view_key, span)
return 0
