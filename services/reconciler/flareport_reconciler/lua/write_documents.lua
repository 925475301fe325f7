-- Fragment: writes rule documents and keeps the rules index in step; each document is {key, rule_key, write}, where
-- write '-' deletes it and '' leaves it as it is. The read-model counter rises once if anything was written.
-- uses: bump_version
local function write_documents(documents, rules_index, readmodel_version, version_seed)
  local changed = false
  for _, document in ipairs(documents) do
    if document.write == '-' then
      redis.call('DEL', document.key)
      redis.call('SREM', rules_index, document.rule_key)
      changed = true
    elseif document.write ~= '' then
      redis.call('SET', document.key, document.write)
      redis.call('SADD', rules_index, document.rule_key)
      changed = true
    end
  end
  if changed then bump_version(readmodel_version, version_seed) end
end
