-- Fragment: a target's coalescing window (flareport_reconciler.coalesce, "The window"): how long after the
-- target's last write further changes wait, so that they fold into one job at the window's end.
--   w = max(base_ms, DURATION_FACTOR x the last job's duration     a slow Cloudflare makes every job cost more:
--                    per write, ``last_ms``)                       a busy target has a job at Cloudflare at most
--                                                                  about a sixth of the time
--   x heat / HOT when more than HOT jobs were sent lately           a busy target folds more per job
--   x pressure (1, 2 or 4: the caller's reading of the shared rate budget)
--   at most max_ms; 0 when max_ms is 0 (coalescing by window off: every change is planned at once).
-- heat is the number of jobs sent for the target, halving every HEAT_HALF_LIFE_MS (``heat_at``: when it was
-- last brought up to date).
local HEAT_HALF_LIFE_MS, HOT, DURATION_FACTOR = 10000, 8, 5

local function decayed_heat(state_key, now_ms)
  local fields = redis.call('HMGET', state_key, 'heat', 'heat_at')
  local heat, at = tonumber(fields[1]), tonumber(fields[2])
  if heat == nil or at == nil then return 0 end
  return heat * 2 ^ (-math.max(0, now_ms - at) / HEAT_HALF_LIFE_MS)
end

local function window_ms(state_key, now_ms, base_ms, max_ms, pressure)
  if max_ms <= 0 then return 0 end
  local last = tonumber(redis.call('HGET', state_key, 'last_ms') or '0') or 0
  local w = math.max(base_ms, DURATION_FACTOR * last)
  local heat = decayed_heat(state_key, now_ms)
  if heat > HOT then w = w * heat / HOT end
  return math.floor(math.min(w * pressure, max_ms))
end

-- An agent's word that the run of changes it announced has ended (coalesce.Run.ENDED) is honoured only while the
-- shared rate budget is not short (a short budget folds anyway), and for a run announced by one container at a time
-- (``announced`` 1: coalesce.Run.NEXT, the agent had one container created and not started, which scripts creating
-- and starting containers in turn show between every two starts) only while Cloudflare answers fast too (the window
-- is not widened by the last job's duration): a slow Cloudflare makes a job of such a run's every pause cost real
-- time. A run announced by several containers waiting (``announced`` 2: docker compose up) is all there when it ends.
local function run_end_honoured(state_key, base_ms, pressure, announced)
  if pressure > 1 or announced < 1 then return false end
  if announced >= 2 then return true end
  local last = tonumber(redis.call('HGET', state_key, 'last_ms') or '0') or 0
  return DURATION_FACTOR * last <= base_ms
end

-- The earliest the run's end may send the target's next job: a window after its last job was sent (``heat_at``).
-- So an agent that keeps announcing and ending runs gets no more jobs than one that sends a change every window
-- already could.
local function run_end_due(state_key, now_ms, base_ms, max_ms, pressure)
  local sent = tonumber(redis.call('HGET', state_key, 'heat_at') or '')
  if sent == nil then return now_ms end
  return math.max(now_ms, sent + window_ms(state_key, now_ms, base_ms, max_ms, pressure))
end
