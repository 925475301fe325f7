-- Reserves one password check for a client address, or refuses when its window's count is at the limit
-- (flareport_api.ui.sessions.LoginBrake). One script, so concurrent attempts never all read a count below the limit.
-- KEYS: failures_key   the address's attempts in the current window
-- ARGV: limit          attempts allowed per window
--       window_s       the window's length in seconds
-- Returns 0 when the attempt is counted, else the seconds left in the window (at least 1).
local failures_key = KEYS[1]
local limit, window_s = tonumber(ARGV[1]), tonumber(ARGV[2])

local count = tonumber(redis.call('GET', failures_key) or '0')
if count >= limit then
  local ttl = redis.call('TTL', failures_key)
  if ttl < 0 then
    redis.call('EXPIRE', failures_key, window_s)
    ttl = window_s
  end
  return math.max(1, ttl)
end
redis.call('INCR', failures_key)
if redis.call('TTL', failures_key) < 0 then redis.call('EXPIRE', failures_key, window_s) end
return 0
