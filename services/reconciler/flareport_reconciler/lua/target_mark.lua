-- A change touched a target (flareport_reconciler.coalesce): if nothing is in flight, or what is in flight is
-- stale (its replica died while planning, or its job's result never came), the caller takes the target and plans
-- it: at once for a lone change, or at the end of the target's window when the target was written less than a
-- window ago, the change is a burst's first part (``weight`` >= ``burst_weight`` hostnames) or its agent says more
-- is coming (``run`` NEXT or MORE: it has one or several containers created and not yet started). Otherwise the
-- change is folded into the next job as "pending" (``last_change``: when, for target_begin's extension).
-- A held target remembers that a run was announced (``announced``: 1 by NEXT, 2 by MORE, the highest). A change
-- whose agent says the run ended (``run`` ENDED: nothing created is left to start) takes over a plan still waiting
-- for its window and plans at once, or, when a plan or job is underway, makes the next plan go without extending
-- its hold (``run_ended``); only while the rate budget is not short, for a run of single containers only while
-- Cloudflare answers fast (run_end_honoured), and never sooner than a window after the target's last job was sent
-- (run_end_due).
-- KEYS: state_key       the target's state hash (inflight, since, pending, version, members, done...)
--       waiting_key     the sorted set of targets held for a window (score: when their plan is due, ms)
-- ARGV: now_ms          the time, in milliseconds
--       token           the caller's plan token (the target is held as "plan:<token>")
--       stale_plan_ms   how long a plan holds the target (counted from when it is due)
--       stale_job_ms    how long a job awaiting its result holds the target
--       force           '1' to forget the last sent version (the next job is sent even if unchanged)
--       target          the target's name, for waiting_key
--       weight          how many hostnames the change touched
--       base_ms         the window's base (see coalesce_window)
--       max_ms          the window's bound; 0: no window
--       burst_weight    a change of at least this many hostnames waits a window even on a quiet target
--       pressure        1, 2 or 4: how low the shared rate budget is
--       run             0 no word from the agent, 1 NEXT (one container is still to start), 2 ENDED (the run
--                       ended), 3 MORE (several are still to start)
-- Returns {PENDING, 0} or {HELD, delay_ms}: the caller holds the target and must plan it after delay_ms.
-- uses: coalesce_window
local state_key, waiting_key = KEYS[1], KEYS[2]
local now_ms, token = tonumber(ARGV[1]), ARGV[2]
local stale_plan_ms, stale_job_ms, force = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local target, weight, base_ms, max_ms = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local burst_weight, pressure, run = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12] or '0')
local PENDING, HELD = 0, 1
local NEXT, ENDED, MORE = 1, 2, 3
local strength = 0
if run == NEXT then strength = 1 elseif run == MORE then strength = 2 end

-- The run's announcement the target's hold keeps: the strongest of its changes' (``current``: what it keeps now).
local function announce(current)
  if strength > current then redis.call('HSET', state_key, 'announced', tostring(strength)) end
end

local inflight = redis.call('HGET', state_key, 'inflight')
if inflight then
  local since = tonumber(redis.call('HGET', state_key, 'since') or '0')
  local limit = stale_job_ms
  if string.sub(inflight, 1, 5) == 'plan:' then limit = stale_plan_ms end
  if now_ms - since < limit then
    local announced = tonumber(redis.call('HGET', state_key, 'announced') or '0') or 0
    if run == ENDED and run_end_honoured(state_key, base_ms, pressure, announced) then
      local due = run_end_due(state_key, now_ms, base_ms, max_ms, pressure)
      if string.sub(inflight, 1, 5) == 'plan:' and since > now_ms and due <= now_ms then
        -- The plan waits for a window (``since`` is when it is due) the run's end makes pointless: this caller
        -- takes it over and plans now (the waiting replica's plan finds the target taken: target_begin answers -1).
        -- A plan already due or being built reads this change anyway, and plans without extending its hold; so
        -- does one that may not go yet (its last job was sent less than a window ago).
        redis.call('HSET', state_key, 'inflight', 'plan:' .. token, 'since', tostring(now_ms))
        redis.call('HDEL', state_key, 'pending', 'last_change', 'held_from', 'announced', 'run_ended')
        redis.call('ZREM', waiting_key, target)
        if force then redis.call('HDEL', state_key, 'version') end
        return {HELD, 0}
      end
      redis.call('HSET', state_key, 'run_ended', '1')
    end
    announce(announced)
    redis.call('HSET', state_key, 'pending', '1', 'last_change', tostring(now_ms))
    return {PENDING, 0}
  end
end
local delay = 0
local w = window_ms(state_key, now_ms, base_ms, max_ms, pressure)
if w > 0 then
  local done_at = tonumber(redis.call('HGET', state_key, 'done_at') or '')
  if done_at ~= nil and now_ms - done_at < w then
    delay = done_at + w - now_ms
  elseif weight >= burst_weight then
    delay = w
  end
  if strength > 0 then delay = math.max(delay, w) end
end
-- ``since`` is when the plan is due: a replica that dies while waiting holds the target only stale_plan_ms
-- past that, and the sweeper finds it in waiting_key then.
redis.call('HSET', state_key, 'inflight', 'plan:' .. token, 'since', tostring(now_ms + delay))
-- A new hold: what earlier runs announced no longer holds.
redis.call('HDEL', state_key, 'pending', 'run_ended', 'announced')
if force then redis.call('HDEL', state_key, 'version') end
if delay > 0 then
  redis.call('ZADD', waiting_key, now_ms + delay, target)
  redis.call('HSET', state_key, 'held_from', tostring(now_ms))
  announce(0)
end
return {HELD, delay}
