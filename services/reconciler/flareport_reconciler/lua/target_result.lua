-- A job's result for a target (flareport_reconciler.coalesce). The job in flight is cleared; if a change is
-- pending the caller takes the target to plan again. The last finished job is remembered (done, done_members):
-- the same result delivered again (its first handler died before updating the rule statuses) is still applied to
-- the statuses, and nothing else, as long as no later job has been sent.
-- KEYS: state_key   the target's state hash
-- ARGV: job_id      the job the result is for
--       ok          '1' if the job succeeded; '0' forgets the sent version, so the next plan sends a job again
--       now_ms      the time, in milliseconds
--       token       the caller's plan token, should it have to plan again
-- Returns {code, the job's members ('' when unknown)}, the code one of STALE (neither the job in flight nor the
-- last finished one: ignore it), FINISHED, PLAN_AGAIN (the caller holds the target) or REPEATED (the last finished
-- job's result again: only its statuses apply).
local state_key = KEYS[1]
local job_id, ok, now_ms, token = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4]
local STALE, FINISHED, PLAN_AGAIN, REPEATED = 0, 1, 2, 3

local inflight = redis.call('HGET', state_key, 'inflight')
if inflight ~= job_id then
  -- The last finished job's result again, and no later job sent since (nothing in flight, or only a plan):
  -- it is still the newest word on these rules.
  local idle = (not inflight) or string.sub(inflight, 1, 5) == 'plan:'
  if idle and redis.call('HGET', state_key, 'done') == job_id then
    return {REPEATED, redis.call('HGET', state_key, 'done_members') or ''}
  end
  return {STALE, ''}
end
local members = redis.call('HGET', state_key, 'members') or ''
redis.call('HSET', state_key, 'done', job_id, 'done_members', members)
if not ok then redis.call('HDEL', state_key, 'version') end
if redis.call('HGET', state_key, 'pending') == '1' then
  redis.call('HSET', state_key, 'inflight', 'plan:' .. token, 'since', now_ms)
  redis.call('HDEL', state_key, 'pending')
  return {PLAN_AGAIN, members}
end
redis.call('HDEL', state_key, 'inflight', 'since')
return {FINISHED, members}
