-- Marks hostnames dirty (flareport_reconciler.claims). A mark always moves: one above the current score if that
-- is not older than now, so a refresh that read a mark sees any change made after it, even within the same
-- millisecond; the refresh's compare-and-set (write_refresh) relies on it for agents' changes.
-- KEYS: dirty        the dirty-hostnames sorted set (hostname -> mark)
-- ARGV: now_ms       the mark, the time in milliseconds
--       hostname...  the hostnames to mark
-- Returns 1.
local dirty = KEYS[1]
local now_ms = tonumber(ARGV[1])
local FIRST_HOSTNAME = 2

for i = FIRST_HOSTNAME, #ARGV do
  local hostname = ARGV[i]
  local score = tonumber(redis.call('ZSCORE', dirty, hostname))
  if score and score >= now_ms then
    redis.call('ZADD', dirty, score + 1, hostname)
  else
    redis.call('ZADD', dirty, now_ms, hostname)
  end
end
return 1
