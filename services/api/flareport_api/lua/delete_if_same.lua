-- Deletes a key only while it still holds the value this process wrote (a generated admin password hash whose
-- password could not be saved), so a value another replica wrote meanwhile stays.
-- KEYS: key        the key to delete
-- ARGV: expected   the value it must hold
-- Returns 1 when the key was deleted, else 0.
local key = KEYS[1]
local expected = ARGV[1]

if redis.call('GET', key) == expected then return redis.call('DEL', key) end
return 0
