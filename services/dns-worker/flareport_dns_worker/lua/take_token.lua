-- Admits one Cloudflare call under the rate limits shared by every replica (flareport_dns_worker.ratelimit): at
-- most `budget` calls admitted in any span of `span_ms`, and at most `second_budget` calls (0 = no cap) in flight
-- or ended within the last `second_span_ms` (the per-second cap). Reads Redis' own clock, so replica clocks do not
-- matter.
-- KEYS: calls_key         list of the Redis times (ms) of the calls admitted within the span, oldest first
--       view_key          hash read by the API's status and the reconciler's coalescing window: tokens = calls
--                         that may start now, budget = calls per span, at = Redis time (ms)
--       pause_key         Redis time in ms until which nobody may call (set after a 429)
--       recent_key        sorted set of the per-second cap's calls: member = the call's ticket, score = the Redis
--                         time (ms) it ended, or while it is in flight the latest it can reach Cloudflare
--       standing_key      hash: Cloudflare's standing as its `Ratelimit` headers reported it (end_call.lua):
--                         left = calls it still allows us, until = Redis time (ms) its window resets
--       serial_key        the count of calls ever admitted
-- ARGV: budget            calls per span
--       span_ms           the span
--       second_budget     calls per second span (0: no cap)
--       second_span_ms    the second span
--       ticket            this call's ticket (unique), ended by `ZADD recent_key XX <time> <ticket>`
--       hold_ms           how long after admission an unended call may still reach Cloudflare (its timeout)
-- Returns {0, serial} when the call was admitted (serial: its admission's number), else {milliseconds to wait
-- before trying again, 0}.
local calls_key, view_key, pause_key, recent_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local standing_key, serial_key = KEYS[5], KEYS[6]
local budget, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local second_budget, second_span = tonumber(ARGV[3]), tonumber(ARGV[4])
local ticket, hold = ARGV[5], tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', pause_key) or '0')
if pause > now then return {pause - now, 0} end
-- Cloudflare's own count covers everyone spending the user's budget (the dashboard, other tools): when its last
-- standing leaves us nothing, wait for its window's reset.
local standing = redis.call('HMGET', standing_key, 'left', 'until')
local standing_left = nil
if standing[1] and tonumber(standing[2]) > now then
  standing_left = tonumber(standing[1])
  if standing_left <= 0 then return {tonumber(standing[2]) - now, 0} end
end
-- Calls that left the span no longer count (each entry is dropped once: amortised constant time).
while true do
  local first = redis.call('LINDEX', calls_key, 0)
  if not first or tonumber(first) + span > now then break end
  redis.call('LPOP', calls_key)
end
local n = redis.call('LLEN', calls_key)
-- The window: full when the budget-th most recent call is still within the span; the wait is until it leaves.
-- (More than `budget` are kept after the budget was lowered.)
if n >= budget then
  local due = tonumber(redis.call('LINDEX', calls_key, n - budget)) + span
  if due > now then return {due - now, 0} end
end
if second_budget > 0 then
  -- Cloudflare counts a call when it arrives, which is some time between its admission and its end. Counting
  -- every call until one second span after it ended (or its hold, while in flight) therefore over-counts each
  -- window Cloudflare can see, however late a call arrives: a cold connection cannot bunch our calls.
  redis.call('ZREMRANGEBYSCORE', recent_key, '-inf', now - second_span)
  local m = redis.call('ZCARD', recent_key)
  if m >= second_budget then
    local blocking = redis.call('ZRANGE', recent_key, m - second_budget, m - second_budget, 'WITHSCORES')
    local ended = tonumber(blocking[2])
    -- A call still in flight ends when Cloudflare answers, soon: ask again shortly rather than at its hold.
    if ended > now then return {math.min(second_span, 25), 0} end
    return {ended + second_span - now, 0}
  end
  redis.call('ZADD', recent_key, now + hold, ticket)
  redis.call('PEXPIRE', recent_key, hold + second_span)
end
redis.call('RPUSH', calls_key, tostring(now))
redis.call('PEXPIRE', calls_key, span)
-- The calls that may start now as far as the window (and Cloudflare's standing) is concerned.
local tokens = math.max(0, budget - n - 1)
if standing_left then
  redis.call('HINCRBY', standing_key, 'left', -1)
  tokens = math.max(0, math.min(tokens, standing_left - 1))
end
redis.call('HSET', view_key, 'tokens', tostring(tokens), 'budget', tostring(budget), 'at', tostring(now))
redis.call('PEXPIRE', view_key, span)
return {0, redis.call('INCR', serial_key)}
