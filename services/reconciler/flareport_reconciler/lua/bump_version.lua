-- Fragment: raises the read-model counter (Keys.readmodel_version) after a script wrote a document the web UI
-- shows. The seed (random) starts the counter only if it is absent, as flareport_common.readversion.bump does in transactions.
local function bump_version(counter_key, seed)
  redis.call('SET', counter_key, seed, 'NX')
  redis.call('INCR', counter_key)
end
