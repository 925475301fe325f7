-- Trims a stream below the first entry some consumer group still needs (flareport_common.streams.trim).
-- KEYS: stream        the stream to trim
-- ARGV: (none)
-- Returns how many entries were removed. A missing stream or a stream without groups is left alone.
local stream = KEYS[1]

-- A stream id "<ms>-<seq>" as two numbers.
local function split_id(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

if redis.call('EXISTS', stream) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return 0 end
local best_ms, best_seq = nil, nil
for _, group in ipairs(groups) do
  local f = {}
  for j = 1, #group, 2 do f[group[j]] = group[j + 1] end
  local ms, seq
  if f['pending'] > 0 then
    -- The oldest entry delivered and not acknowledged is still needed.
    ms, seq = split_id(redis.call('XPENDING', stream, f['name'])[2])
  else
    -- Nothing pending: everything up to the last delivered entry was handled.
    ms, seq = split_id(f['last-delivered-id'])
    seq = seq + 1
  end
  if best_ms == nil or ms < best_ms or (ms == best_ms and seq < best_seq) then best_ms, best_seq = ms, seq end
end
return redis.call('XTRIM', stream, 'MINID', '~', string.format('%d-%d', best_ms, best_seq))
