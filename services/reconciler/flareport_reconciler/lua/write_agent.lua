-- A compare-and-set of one agent record (flareport_reconciler.records.update_agent): the record is written only if
-- it is still as the caller read it, as WATCH would, in one round trip instead of WATCH, GET and MULTI/EXEC.
-- KEYS: agent_key           the agent's record
--       agents_index        the set of agent ids that have a record
--       readmodel_version   the read-model counter
-- ARGV: agent_id            the agent's id (the index's member)
--       record_read         the record as read ('' = absent)
--       record_write        the record to write
--       version_seed        the read-model counter's start if it is absent
-- Returns WRITTEN, or CHANGED when the record has changed since it was read (nothing is written then).
-- uses: bump_version
local WRITTEN, CHANGED = 1, 0
local agent_key, agents_index, readmodel_version = KEYS[1], KEYS[2], KEYS[3]
local agent_id, record_read, record_write, version_seed = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if (redis.call('GET', agent_key) or '') ~= record_read then return CHANGED end
redis.call('SET', agent_key, record_write)
redis.call('SADD', agents_index, agent_id)
bump_version(readmodel_version, version_seed)
return WRITTEN
