-- resource-gone-2.lua: unavailable presence (or a presence error) from one resource, or from the bare JID.
-- KEYS[1]  resources hash   KEYS[2]  gone hash (resource -> epoch ms its unavailable presence was seen)
-- ARGV[1]  now (epoch ms)   ARGV[2]  TTL of the gone hash (ms)   ARGV[3]  the resource; empty for all of them
-- Returns  the number of resources removed
local gone = {}
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
return #gone
