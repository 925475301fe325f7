-- Admits a batch of an agent's events into the events stream, or refuses it whole (flareport_api.ingest).
-- KEYS: last_seq_key   the agent's last accepted sequence number
--       stream         the events stream
--       bucket_key     the agent's token bucket (hash: tokens, ms)
-- ARGV: rate           events per second the bucket refills
--       burst          the bucket's size
--       backlog_limit  entries not yet handled by the group at which new events are refused
--       group          the consumer group whose backlog counts
--       field          the stream entry's field that holds the message
--       (seq, payload)...  per event: its sequence number ("" when it has none) and its encoded message
-- Returns {OK, accepted, last seq, duplicates}, {RATE, milliseconds until enough tokens} or
-- {BACKLOG, entries not yet handled}. Nothing is written unless the answer is OK.
local last_seq_key, stream, bucket_key = KEYS[1], KEYS[2], KEYS[3]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local backlog_limit, group_name, field = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local FIRST_EVENT = 6
local OK, RATE, BACKLOG = 'ok', 'rate', 'backlog'

local last = tonumber(redis.call('GET', last_seq_key) or '-1')
local fresh = {}
local dups = {}
for i = FIRST_EVENT, #ARGV, 2 do
  local seq = ARGV[i]
  if seq ~= '' and tonumber(seq) <= last then
    table.insert(dups, seq)
  else
    table.insert(fresh, ARGV[i + 1])
    if seq ~= '' then last = tonumber(seq) end
  end
end
local last_text = string.format('%d', last)
if #fresh == 0 then return {OK, 0, last_text, dups} end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local tokens = burst
local bucket = redis.call('HMGET', bucket_key, 'tokens', 'ms')
if bucket[1] then
  tokens = math.min(burst, tonumber(bucket[1]) + math.max(0, now - tonumber(bucket[2])) * rate / 1000)
end
local need = math.min(#fresh, burst)
if tokens < need then return {RATE, math.ceil((need - tokens) * 1000 / rate)} end

local backlog = 0
if redis.call('EXISTS', stream) == 1 then
  backlog = nil
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local f = {}
    for j = 1, #group, 2 do f[group[j]] = group[j + 1] end
    -- lag is nil when Redis cannot tell (entries deleted inside the range): the stream's length bounds it.
    if f['name'] == group_name and f['lag'] then backlog = f['lag'] + f['pending'] end
  end
  if not backlog then backlog = redis.call('XLEN', stream) end
end
if backlog >= backlog_limit then return {BACKLOG, backlog} end

tokens = tokens - #fresh
redis.call('HSET', bucket_key, 'tokens', tostring(tokens), 'ms', string.format('%d', now))
-- A full bucket is the same as no key: let an idle agent's bucket expire.
redis.call('PEXPIRE', bucket_key, math.ceil((burst - tokens) * 1000 / rate) + 1000)
for _, payload in ipairs(fresh) do redis.call('XADD', stream, '*', field, payload) end
if last >= 0 then redis.call('SET', last_seq_key, last_text) end
return {OK, #fresh, last_text, dups}
