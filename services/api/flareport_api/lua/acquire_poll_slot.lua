-- Takes one of an agent's long-poll slots unless it holds its limit already (flareport_api.longpoll).
-- KEYS: polls_key   the agent's open polls (sorted set: poll id -> Redis time in ms when the slot lapses)
-- ARGV: limit       slots the agent may hold at once
--       life_ms     how long the slot lives unless released
--       poll_id     the new slot's member
-- Returns {TAKEN, 0}, or {FULL, milliseconds until the oldest slot lapses} when the agent is at its limit.
local polls_key = KEYS[1]
local limit, life_ms, poll_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local FULL, TAKEN = 0, 1

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', polls_key, '-inf', now)
if redis.call('ZCARD', polls_key) >= limit then
  local oldest = redis.call('ZRANGE', polls_key, 0, 0, 'WITHSCORES')
  return {FULL, math.max(0, tonumber(oldest[2]) - now)}
end
redis.call('ZADD', polls_key, now + life_ms, poll_id)
if redis.call('PTTL', polls_key) < life_ms then redis.call('PEXPIRE', polls_key, life_ms) end
return {TAKEN, 0}
