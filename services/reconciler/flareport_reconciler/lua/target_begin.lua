-- A plan held for a window is due (flareport_reconciler.coalesce). If changes are still arriving — one was folded
-- in less than a window ago — the hold is extended to a window after that change, so a run of changes (containers
-- started one after another) goes out as one job once it pauses; a hold never lasts longer than max_ms in all.
-- Otherwise the changes folded in are about to be read, so they are no longer pending: a change arriving from now
-- on sets pending again and brings one more plan after this one's job (and the run they announced is planned).
-- KEYS: state_key     the target's state hash (last_change: the newest change folded in; held_from: the hold's start)
--       waiting_key   the sorted set of targets held for a window
-- ARGV: token         the caller's plan token
--       now_ms        the time, in milliseconds
--       target        the target's name, for waiting_key
--       base_ms, max_ms, pressure   the window's parameters (see coalesce_window)
--       extend        '1' to extend the hold while changes arrive, '0' to begin now (a replica stopping)
-- Returns -1 when another replica took the target over (nothing changed), 0 when the caller plans now, or the
-- milliseconds the hold was extended by.
-- uses: coalesce_window
local state_key, waiting_key = KEYS[1], KEYS[2]
local token, now_ms, target = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local base_ms, max_ms, pressure, extend = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'

if redis.call('HGET', state_key, 'inflight') ~= 'plan:' .. token then return -1 end
local fields = redis.call('HMGET', state_key, 'pending', 'last_change', 'held_from', 'run_ended')
local last, from = tonumber(fields[2]), tonumber(fields[3])
-- A change that ended the run its agent announced (target_mark) is the last one coming: no extension.
if extend and fields[1] == '1' and last ~= nil and fields[4] ~= '1' then
  local due = last + window_ms(state_key, now_ms, base_ms, max_ms, pressure)
  if from ~= nil then due = math.min(due, from + max_ms) end
  if due > now_ms then
    redis.call('HSET', state_key, 'since', tostring(due))
    redis.call('ZADD', waiting_key, due, target)
    return due - now_ms
  end
end
redis.call('HDEL', state_key, 'pending', 'last_change', 'held_from', 'announced', 'run_ended')
return 0
