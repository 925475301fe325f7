-- A job's result for a target (flareport_reconciler.coalesce). The job in flight is cleared and the target's
-- write remembered (``done_at``, and the job's duration per write ``last_ms``, which its window grows with); if a
-- change is pending the caller takes the target to plan it again a window after the newest change (at once when
-- its agent said the run it announced ended, see target_mark). The last finished job is
-- remembered (done, done_members): the same result delivered again (its first handler died before updating the
-- rule statuses) is still applied to the statuses, and nothing else, as long as no later job has been sent.
-- KEYS: state_key   the target's state hash
--       waiting_key the sorted set of targets held for a window (score: when their plan is due, ms)
-- ARGV: job_id      the job the result is for
--       ok          '1' if the job succeeded; '0' forgets the sent version, so the next plan sends a job again
--       now_ms      the time, in milliseconds
--       token       the caller's plan token, should it have to plan again
--       target      the target's name, for waiting_key
--       base_ms, max_ms, pressure   the window's parameters (see coalesce_window)
--       writes      the Cloudflare writes the job made (its duration is divided by them, at least 1)
--       cloudflare_ms how long the job's calls took to be answered (the worker's count), or -1: then its duration
--                   is from its commit (``since``) to now
-- Returns {code, the job's members ('' when unknown), delay_ms}, the code one of STALE (neither the job in flight
-- nor the last finished one: ignore it), FINISHED, PLAN_AGAIN (the caller holds the target and plans it after
-- delay_ms) or REPEATED (the last finished job's result again: only its statuses apply).
-- uses: coalesce_window
local state_key, waiting_key = KEYS[1], KEYS[2]
local job_id, ok, now_ms, token = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4]
local target, base_ms, max_ms, pressure = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local writes = math.max(1, tonumber(ARGV[9] or '1') or 1)
local answered = tonumber(ARGV[10] or '-1') or -1
local STALE, FINISHED, PLAN_AGAIN, REPEATED = 0, 1, 2, 3

local inflight = redis.call('HGET', state_key, 'inflight')
if inflight ~= job_id then
  -- The last finished job's result again, and no later job sent since (nothing in flight, or only a plan):
  -- it is still the newest word on these rules.
  local idle = (not inflight) or string.sub(inflight, 1, 5) == 'plan:'
  if idle and redis.call('HGET', state_key, 'done') == job_id then
    return {REPEATED, redis.call('HGET', state_key, 'done_members') or '', 0}
  end
  return {STALE, '', 0}
end
local members = redis.call('HGET', state_key, 'members') or ''
-- The sender's clock and the worker's may differ: a duration outside [0, max_ms] says nothing about Cloudflare.
local took = now_ms - (tonumber(redis.call('HGET', state_key, 'since') or '') or now_ms)
-- Commit to result also holds the job's waits in the stream, for its lease and for the shared rate limiter: under
-- load every job would look slow. The worker's own count of its calls' answer time is what Cloudflare took.
if answered >= 0 then took = answered end
took = math.max(0, math.min(took, max_ms))
-- Per write: the window is there to fold changes into fewer calls. A job of one write (a tunnel's configuration,
-- a few DNS records) took as long as Cloudflare's answers, and the next change folding into it saves a call. A job
-- of many writes (thousands of DNS records in full batches) took long because it was large: waiting five times
-- that after it would save at most one part-filled batch, and hold the hostnames that came meanwhile for seconds.
took = math.floor(took / writes)
redis.call('HSET', state_key, 'done', job_id, 'done_members', members, 'done_at', tostring(now_ms),
  'last_ms', tostring(took))
if not ok then redis.call('HDEL', state_key, 'version') end
if redis.call('HGET', state_key, 'pending') == '1' then
  local w = window_ms(state_key, now_ms, base_ms, max_ms, pressure)
  -- A window after the newest change folded in, as target_begin extends a hold: changes that came while the job
  -- waited its turn (a spent rate budget holds a zone's job for seconds) and none since are all there is, and
  -- waiting a whole window after the result would only delay them.
  local last = tonumber(redis.call('HGET', state_key, 'last_change') or '')
  local delay = w
  if last ~= nil then delay = math.max(0, math.min(w, last + w - now_ms)) end
  -- A change pending since its agent said its run ended (target_mark): the run is all here, plan it as soon as a
  -- window has passed since this job was sent, not a window from now.
  local announced = tonumber(redis.call('HGET', state_key, 'announced') or '0') or 0
  if redis.call('HGET', state_key, 'run_ended') == '1' and run_end_honoured(state_key, base_ms, pressure, announced) then
    delay = math.min(delay, run_end_due(state_key, now_ms, base_ms, max_ms, pressure) - now_ms)
    redis.call('HDEL', state_key, 'announced')
  end
  redis.call('HDEL', state_key, 'run_ended')
  redis.call('HSET', state_key, 'inflight', 'plan:' .. token, 'since', tostring(now_ms + delay),
    'held_from', tostring(now_ms))
  redis.call('HDEL', state_key, 'pending')
  -- Even without a delay: a replica that dies before planning leaves the target for the sweeper to find.
  redis.call('ZADD', waiting_key, now_ms + delay, target)
  return {PLAN_AGAIN, members, delay}
end
redis.call('HDEL', state_key, 'inflight', 'since', 'announced', 'run_ended')
return {FINISHED, members, 0}
