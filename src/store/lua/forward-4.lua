-- forward-4.lua: choose an online resource and record the request as pending, in one atomic step.
-- KEYS[1] resources hash (resource -> last seen), KEYS[2] the request's record hash, KEYS[3] deadlines zset,
-- KEYS[4] subscription flag (without it the store does not know the target's presence: lost or never learnt)
-- ARGV[1] requester, ARGV[2] id, ARGV[3] to, ARGV[4] type, ARGV[5] deadline (epoch ms), ARGV[6] pick in [0, 1),
-- ARGV[7] member, ARGV[8] record TTL (ms), ARGV[9] deadlines zset TTL (ms),
-- ARGV[10] the request's payload (serialized child element), kept so a failover can send it again
-- Returns {"forwarded", resource} | {"no-resource"} | {"presence-unknown"} | {"duplicate"}
local resources, record, deadlines = KEYS[1], KEYS[2], KEYS[3]

-- Only a pending record blocks; a tombstone (replied / timeout) is overwritten by the new request.
if redis.call("HGET", record, "state") == "pending" then
  return { "duplicate" }
end

local names = redis.call("HKEYS", resources)
if #names == 0 then
  if redis.call("EXISTS", KEYS[4]) == 0 then
    return { "presence-unknown" }
  end
  return { "no-resource" }
end
-- Byte order: Lua's < on strings follows the server's locale (strcoll).
table.sort(names, function(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end)
local index = math.floor(tonumber(ARGV[6]) * #names) + 1
if index > #names then index = #names end
if index < 1 then index = 1 end
local resource = names[index]

redis.call("HSET", record, "requester", ARGV[1], "id", ARGV[2], "to", ARGV[3], "type", ARGV[4],
  "resource", resource, "deadline", ARGV[5], "state", "pending", "payload", ARGV[10])
redis.call("PEXPIRE", record, ARGV[8])
redis.call("ZADD", deadlines, ARGV[5], ARGV[7])
redis.call("PEXPIRE", deadlines, ARGV[9])

return { "forwarded", resource }
