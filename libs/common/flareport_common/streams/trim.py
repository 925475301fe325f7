"""Trimming a stream below what every consumer group has handled, never below what one still needs.

Producers add without ``MAXLEN``: a length cap drops the oldest entries whether or not they were read, so a
flood could push out an event that was already answered 200. Instead the consumers trim, from time to time, with
``XTRIM MINID ~`` below the first entry some group still needs: the oldest entry of its pending list (delivered,
not acknowledged) or, when that list is empty, the entry after its last-delivered id. A stream without any group
is never trimmed (nobody has read it yet). ``~`` lets Redis drop only whole macro-nodes below that id: it may keep
a few handled entries, never remove a needed one. One Lua script reads the groups and trims atomically, so a
group created or a message delivered meanwhile cannot be raced.

What bounds each stream then is whatever limits its producers (docs/stream-runtime.md, "Trimming").
"""

from __future__ import annotations

import redis.asyncio as aioredis

# KEYS[1] the stream. Answers how many entries were removed.
TRIM_HANDLED_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local best_ms, best_seq = nil, nil
for _, group in ipairs(groups) do
  local f = {}
  for j = 1, #group, 2 do f[group[j]] = group[j + 1] end
  local ms, seq
  if f['pending'] > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], f['name'])[2]
    local dash = string.find(oldest, '-', 1, true)
    ms, seq = tonumber(string.sub(oldest, 1, dash - 1)), tonumber(string.sub(oldest, dash + 1))
  else
    local done = f['last-delivered-id']
    local dash = string.find(done, '-', 1, true)
    ms, seq = tonumber(string.sub(done, 1, dash - 1)), tonumber(string.sub(done, dash + 1)) + 1
  end
  if best_ms == nil or ms < best_ms or (ms == best_ms and seq < best_seq) then best_ms, best_seq = ms, seq end
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d-%d', best_ms, best_seq))
"""


class StreamTrimmer:
    """Trims one stream below what all its groups have handled (``trim()`` answers how many were removed)."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self._stream = stream
        self._script = redis.register_script(TRIM_HANDLED_LUA)

    async def trim(self) -> int:
        return int(await self._script(keys=[self._stream]))
