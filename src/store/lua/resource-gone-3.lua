-- resource-gone-3.lua: unavailable presence (or a presence error) from one resource, or from the bare JID.
-- The resource stops being routed to, is remembered as gone (a `set` bounced by it later provably never
-- arrived), and pending `get` requests that were sent to it move once to another online resource: the caller
-- sends them again. The pending requests are found by scanning the deadline index: O(pending), on a presence
-- change only.
-- KEYS[1]  resources hash   KEYS[2]  gone hash (resource -> epoch ms)   KEYS[3]  deadline index
-- ARGV[1]  now (epoch ms)   ARGV[2]  TTL of the gone hash (ms)   ARGV[3]  the resource; empty for all of them
-- ARGV[4]  record key prefix (same hash tag)   ARGV[5]  pick in [0, 1)
-- Returns  flat list of 4 fields per moved request: requester, id, new resource, payload
local gone
if ARGV[3] == "" then
  gone = redis.call("HKEYS", KEYS[1])
  redis.call("DEL", KEYS[1])
else
  gone = { ARGV[3] }
  redis.call("HDEL", KEYS[1], ARGV[3])
end
for _, resource in ipairs(gone) do
  redis.call("HSET", KEYS[2], resource, ARGV[1])
end
redis.call("PEXPIRE", KEYS[2], ARGV[2])

local moved = {}
local names = redis.call("HKEYS", KEYS[1])
if ARGV[3] == "" or #names == 0 then
  return moved
end
local base = math.floor(tonumber(ARGV[5]) * #names)
for i, member in ipairs(redis.call("ZRANGE", KEYS[3], 0, -1)) do
  local key = ARGV[4] .. member
  local f = redis.call("HMGET", key, "state", "resource", "type", "retried", "requester", "id", "payload")
  if f[1] == "pending" and f[2] == ARGV[3] and f[3] == "get" and f[4] ~= "1" then
    local resource = names[(base + i) % #names + 1]
    redis.call("HSET", key, "resource", resource, "retried", "1")
    moved[#moved + 1] = f[5]
    moved[#moved + 1] = f[6]
    moved[#moved + 1] = resource
    moved[#moved + 1] = f[7] or ""
  end
end
return moved
