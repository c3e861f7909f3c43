-- failover-4.lua: the resource a request was forwarded to bounced it as unavailable (RFC 6120 8.3.3.19 and
-- 8.3.3.15). Stop routing to that resource and either move the request to another online resource, once, or
-- claim it so that the bounce is passed to the requester.
-- A `get` is moved; a `set` only when the resource's unavailable presence was seen before the bounce, which
-- proves the set was never delivered.
-- KEYS[1]  resources hash   KEYS[2]  the request's record hash   KEYS[3]  gone hash   KEYS[4]  deadline index
-- ARGV[1]  resource that bounced   ARGV[2]  pick in [0, 1)   ARGV[3]  member   ARGV[4]  tombstone TTL (ms)
-- Returns  {"resent", resource, type, payload}
--          | {"claimed", requester, id, to, type, resource, deadline}
--          | {"unknown"} | {"duplicate"} | {"late"} | {"wrong-resource"}
local f = redis.call("HMGET", KEYS[2], "state", "resource", "type", "retried", "requester", "id", "to", "deadline",
  "payload")
local state = f[1]
if state == "replied" then return { "duplicate" } end
if state == "timeout" then return { "late" } end
if state ~= "pending" then return { "unknown" } end
if f[2] ~= ARGV[1] then return { "wrong-resource" } end

-- Gone from routing at once; a probe re-adds it if it is in fact online.
redis.call("HDEL", KEYS[1], ARGV[1])
local movable = f[3] == "get" or redis.call("HEXISTS", KEYS[3], ARGV[1]) == 1
if f[4] ~= "1" and movable then
  local names = redis.call("HKEYS", KEYS[1])
  if #names > 0 then
    local resource = names[math.min(#names, math.floor(tonumber(ARGV[2]) * #names) + 1)]
    redis.call("HSET", KEYS[2], "resource", resource, "retried", "1")
    return { "resent", resource, f[3], f[9] or "" }
  end
end

redis.call("HSET", KEYS[2], "state", "replied")
redis.call("HDEL", KEYS[2], "requester", "id", "to", "type", "resource", "deadline", "retried", "payload")
redis.call("PEXPIRE", KEYS[2], ARGV[4])
redis.call("ZREM", KEYS[4], ARGV[3])
return { "claimed", f[5], f[6], f[7], f[3], f[2], f[8] }
