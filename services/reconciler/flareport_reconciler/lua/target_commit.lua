-- The planner's job for a target it holds (flareport_reconciler.coalesce). If the version equals the last one
-- sent, no job is sent and the target is released, or kept for another plan if a change became pending meanwhile.
-- Otherwise the job is added to the jobs stream in this same script, so the state never says "in flight" about a
-- job that does not exist.
-- KEYS: state_key       the target's state hash
--       jobs_stream     the Cloudflare jobs stream
--       targets_index   the set of known targets
--       waiting_key     the sorted set of targets held for a window (the target leaves it: its plan is done)
-- ARGV: token           the plan token the caller holds the target with
--       job_id          the job's id (in flight until its result)
--       version         the job's desired version
--       payload         the encoded job message
--       members         the rule keys of the job (JSON), for the rule statuses when its result comes
--       now_ms          the time, in milliseconds
--       target          the target's name, for the index
--       field           the stream entry's field that holds the message
-- Returns SENT, UNCHANGED (released), AGAIN (still held: plan again) or LOST (the target is no longer held by
-- this token: its plan went stale and another replica took it over). A job sent raises the target's heat
-- (see coalesce_window).
-- uses: coalesce_window
local state_key, jobs_stream, targets_index, waiting_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, job_id, version, payload = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local members, now_ms, target, field = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local LOST, UNCHANGED, SENT, AGAIN = -1, 0, 1, 2

if redis.call('HGET', state_key, 'inflight') ~= 'plan:' .. token then return LOST end
if (redis.call('HGET', state_key, 'version') or '') == version then
  if redis.call('HGET', state_key, 'pending') == '1' then
    redis.call('HDEL', state_key, 'pending')
    redis.call('HSET', state_key, 'since', now_ms)
    return AGAIN
  end
  redis.call('HDEL', state_key, 'inflight', 'since')
  redis.call('ZREM', waiting_key, target)
  return UNCHANGED
end
redis.call('XADD', jobs_stream, '*', field, payload)  -- no MAXLEN: consumers trim what they handled
redis.call('HSET', state_key, 'inflight', job_id, 'since', now_ms, 'version', version, 'members', members)
redis.call('SADD', targets_index, target)
redis.call('ZREM', waiting_key, target)
redis.call('HSET', state_key, 'heat', tostring(decayed_heat(state_key, tonumber(now_ms)) + 1), 'heat_at', now_ms)
return SENT
