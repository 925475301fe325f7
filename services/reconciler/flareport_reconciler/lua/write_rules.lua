-- A compare-and-set of rule documents (flareport_reconciler.records.update_rules): nothing is written unless every
-- document is still as the caller read it, as WATCH would, without WATCH's extra round trip and per-key commands.
-- KEYS: rules_index         the set of rule keys that have a document
--       readmodel_version   the read-model counter
--       document_key...     per document: the rule document
-- ARGV: (rule_key, document_read, document_write)...
--                           per document: its value as read ('' = absent), the value to write ('' = leave as is,
--                           '-' = delete)
--       version_seed        the read-model counter's start if it is absent
-- Returns WRITTEN, or CHANGED when a document has changed (nothing is written then). The counter rises with the
-- writes.
-- uses: write_documents
local WRITTEN, CHANGED = 1, 0
local rules_index, readmodel_version = KEYS[1], KEYS[2]
local FIRST_DOCUMENT_KEY = 3
local version_seed = ARGV[#ARGV]

local documents = {}
for d = 1, #KEYS - FIRST_DOCUMENT_KEY + 1 do
  local a = 3 * d - 2
  documents[d] = {key = KEYS[FIRST_DOCUMENT_KEY + d - 1], rule_key = ARGV[a], read = ARGV[a + 1], write = ARGV[a + 2]}
end

for _, document in ipairs(documents) do
  if (redis.call('GET', document.key) or '') ~= document.read then return CHANGED end
end
write_documents(documents, rules_index, readmodel_version, version_seed)
return WRITTEN
