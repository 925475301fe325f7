-- Fragment: the check shared by the refresh's two scripts, that a claims hash holds exactly the claims a refresh
-- resolved. A claim list travels in ARGV as its length n, then (claim id, SHA-1 of the stored value) per claim.

-- The claim list that starts at ARGV[first], as {id, sha1} tables, and the index of the argument after it.
local function claim_list(first)
  local count = tonumber(ARGV[first])
  local claims = {}
  for i = 1, count do
    claims[i] = {id = ARGV[first + 2 * i - 1], sha1 = ARGV[first + 2 * i]}
  end
  return claims, first + 1 + 2 * count
end

-- Whether the hash at claims_key holds these claims and nothing else (an assignment field counts as a claim).
local function claims_match(claims_key, claims)
  if redis.call('HLEN', claims_key) ~= #claims then return false end
  for _, claim in ipairs(claims) do
    local value = redis.call('HGET', claims_key, claim.id)
    if not value or redis.sha1hex(value) ~= claim.sha1 then return false end
  end
  return true
end
