-- Ends a refresh after its targets were touched (flareport_reconciler.refresh): a state still as the refresh wrote
-- it drops its pending targets, and the dirty mark is removed if the claims, the mark and the state are still what
-- the refresh resolved. So a newer change keeps its mark, and so does a state another refresh wrote and has not
-- finished.
-- KEYS: dirty                       the dirty-hostnames sorted set
--       (claims_key, state_key)...  per hostname: its claims hash and its state
-- ARGV: hostname_count
--       (hostname, score_read, state_written, state_final, claim list)...
--                                   per hostname: its mark's score as read ('' = leave the mark alone), the state
--                                   the refresh wrote and the state once finished ('' = none), its claims as
--                                   claims_match reads them
-- Returns how many dirty marks were removed.
-- uses: claims_match
local dirty = KEYS[1]
local hostname_count = tonumber(ARGV[1])

local hosts = {}
local a = 2
for h = 1, hostname_count do
  local host = {
    claims_key = KEYS[2 * h],
    state_key = KEYS[2 * h + 1],
    hostname = ARGV[a],
    score_read = ARGV[a + 1],
    state_written = ARGV[a + 2],
    state_final = ARGV[a + 3],
  }
  host.claims, a = claim_list(a + 4)
  hosts[h] = host
end

local cleared = 0
for _, host in ipairs(hosts) do
  local unchanged = claims_match(host.claims_key, host.claims)
  local current = redis.call('GET', host.state_key) or ''
  if current == host.state_written and host.state_written ~= host.state_final then
    if host.state_final == '' then
      redis.call('DEL', host.state_key)
    else
      redis.call('SET', host.state_key, host.state_final)
    end
    current = host.state_final
  end
  if unchanged and current == host.state_final and host.score_read ~= ''
      and (redis.call('ZSCORE', dirty, host.hostname) or '') == host.score_read then
    cleared = cleared + redis.call('ZREM', dirty, host.hostname)
  end
end
return cleared
