-- A compare-and-set of one agent record (flareport_reconciler.records.update_agent): the record is written only if
-- it is still as the caller read it, as WATCH would, in one round trip instead of WATCH, GET and MULTI/EXEC.
-- KEYS: agent_key           the agent's record
--       agents_index        the set of agent ids that have a record
--       readmodel_version   the read-model counter
--       [last_seen]         the agents' last contacts (sorted set), with silent_before only
-- ARGV: agent_id            the agent's id (the index's member)
--       record_read         the record as read ('' = absent)
--       record_write        the record to write
--       version_seed        the read-model counter's start if it is absent
--       [silent_before]     write only if the agent's last contact is not later than this (epoch seconds): the
--                           offline detection's write. A contact that changes nothing but the time moves the set
--                           and not the record, so the record alone cannot say that the agent came back meanwhile.
-- Returns WRITTEN; CHANGED when the record has changed since it was read; HEARD when the agent was heard after
-- silent_before (nothing is written then either).
-- uses: bump_version
local WRITTEN, CHANGED, HEARD = 1, 0, 2
local agent_key, agents_index, readmodel_version = KEYS[1], KEYS[2], KEYS[3]
local agent_id, record_read, record_write, version_seed = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if (redis.call('GET', agent_key) or '') ~= record_read then return CHANGED end
if ARGV[5] and tonumber(redis.call('ZSCORE', KEYS[4], agent_id) or '0') > tonumber(ARGV[5]) then return HEARD end
redis.call('SET', agent_key, record_write)
redis.call('SADD', agents_index, agent_id)
bump_version(readmodel_version, version_seed)
return WRITTEN
