-- What an agent's inventory change depends on, in one command (flareport_reconciler.claims): the values of its
-- container entries, snapshot, pruning floor and record (GET per key: MGET would take them all as arguments of one
-- call), then how many containers it has known and hostnames it claims, for its quotas.
-- KEYS: containers_key   the agent's known containers (set)
--       hostnames_key    the agent's claimed hostnames (set)
--       value_key...     the keys whose values are read
-- ARGV: (none)
-- Returns the values in the order of their keys (nil when absent), then the sizes of the two sets.
local containers_key, hostnames_key = KEYS[1], KEYS[2]
local FIRST_VALUE_KEY = 3

local values = {}
local count = #KEYS - FIRST_VALUE_KEY + 1
for i = 1, count do values[i] = redis.call('GET', KEYS[FIRST_VALUE_KEY + i - 1]) end
values[count + 1] = redis.call('SCARD', containers_key)
values[count + 2] = redis.call('SCARD', hostnames_key)
return values
