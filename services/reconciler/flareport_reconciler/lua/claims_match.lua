-- Fragment: the check shared by the refresh's two scripts, that a claims hash holds exactly the claims a refresh
-- resolved. A claim list travels in ARGV as its length n, then (claim id, SHA-1 of the stored value) per claim.

-- The claim list whose length is ARGV[at], as {first = index of its first claim id, count = n}, and the index of
-- the argument after it. The pairs stay in ARGV: a table per claim would cost more than the check itself.
local function claim_list(at)
  local count = tonumber(ARGV[at])
  return {first = at + 1, count = count}, at + 1 + 2 * count
end

-- Whether the hash at claims_key holds these claims and nothing else (an assignment field counts as a claim).
local function claims_match(claims_key, claims)
  if redis.call('HLEN', claims_key) ~= claims.count then return false end
  for i = claims.first, claims.first + 2 * (claims.count - 1), 2 do
    local value = redis.call('HGET', claims_key, ARGV[i])
    if not value or redis.sha1hex(value) ~= ARGV[i + 1] then return false end
  end
  return true
end
