-- A change touched a target (flareport_reconciler.coalesce): if nothing is in flight, or what is in flight is
-- stale (its replica died while planning, or its job's result never came), the caller takes the target and plans
-- at once. Otherwise the change is folded into the next job as "pending".
-- KEYS: state_key       the target's state hash (inflight, since, pending, version, members, done...)
-- ARGV: now_ms          the time, in milliseconds
--       token           the caller's plan token (the target is held as "plan:<token>")
--       stale_plan_ms   how long a plan holds the target
--       stale_job_ms    how long a job awaiting its result holds the target
--       force           '1' to forget the last sent version (the next job is sent even if unchanged)
-- Returns HELD (the caller holds the target and must plan it) or PENDING.
local state_key = KEYS[1]
local now_ms, token = tonumber(ARGV[1]), ARGV[2]
local stale_plan_ms, stale_job_ms, force = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local PENDING, HELD = 0, 1

local inflight = redis.call('HGET', state_key, 'inflight')
if inflight then
  local since = tonumber(redis.call('HGET', state_key, 'since') or '0')
  local limit = stale_job_ms
  if string.sub(inflight, 1, 5) == 'plan:' then limit = stale_plan_ms end
  if now_ms - since < limit then
    redis.call('HSET', state_key, 'pending', '1')
    return PENDING
  end
end
redis.call('HSET', state_key, 'inflight', 'plan:' .. token, 'since', ARGV[1])
redis.call('HDEL', state_key, 'pending')
if force then redis.call('HDEL', state_key, 'version') end
return HELD
