-- failover-6.lua: the resource a request was forwarded to bounced it as unavailable (RFC 6120 8.3.3.19 and
-- 8.3.3.15). Stop routing to that resource and either move the request to another online resource, once, or
-- claim it, as claim-3.lua does, so that the bounce is passed to the requester. The other resource is chosen as
-- for a new request (lib/choose.lua, without a namespace: the record keeps none).
-- A `get` is moved; a `set` only when the resource's unavailable presence was seen before the bounce, which
-- proves the set was never delivered.
-- KEYS[1]  resources hash   KEYS[2]  the request's record hash   KEYS[3]  gone (sorted set: resource -> when)
-- KEYS[4]  deadline index
-- KEYS[5]  counts: pending per bare JID, and per resource ("/" resource) for records marked "ld" (forward-8.lua)
-- KEYS[6]  presence hash
-- ARGV[1]  resource that bounced   ARGV[2]  pick in [0, 1)   ARGV[3]  member   ARGV[4]  op
-- ARGV[5]  the bounce, serialized   ARGV[6]  now (epoch ms)   ARGV[7]  lease end (epoch ms)
-- ARGV[8]  the generation the bounce's id carries   ARGV[9]  strategy   ARGV[10] "1": highest priority only
-- Returns  {"resent", resource, type, payload}
--          | {"claimed", requester, id, to, type, resource, deadline}
--          | {"unknown"} | {"duplicate"} | {"late"} | {"wrong-resource"} | {"stale"}
--! include lib/choose.lua
local f = redis.call("HMGET", KEYS[2], "state", "resource", "type", "retried", "requester", "id", "to", "deadline",
  "payload", "op", "lease", "outcome", "gen", "ld")
local state = f[1]
if state == "answering" then
  if f[10] == ARGV[4] and tonumber(f[11]) > tonumber(ARGV[6]) then
    return { "claimed", f[5], f[6], f[7], f[3], f[2], f[8] }
  end
  if f[12] == "timeout" then return { "late" } end
  return { "duplicate" }
end
if state == "replied" then return { "duplicate" } end
if state == "timeout" then return { "late" } end
if state ~= "pending" then return { "unknown" } end
if (f[13] or "0") ~= ARGV[8] then return { "stale" } end
if f[2] ~= ARGV[1] then return { "wrong-resource" } end

-- Gone from routing at once; a probe re-adds it if it is in fact online.
redis.call("HDEL", KEYS[1], ARGV[1])
local movable = f[3] == "get" or redis.call("ZSCORE", KEYS[3], ARGV[1]) ~= false
if f[4] ~= "1" and movable and f[9] and f[9] ~= "" then
  local resource = choose(redis.call("HKEYS", KEYS[1]), { presence = KEYS[6], counts = KEYS[5] },
    { strategy = ARGV[9], highest = ARGV[10], pick = ARGV[2], requester = f[5], namespace = "", now = 0 })
  if resource ~= nil then
    redis.call("HSET", KEYS[2], "resource", resource, "retried", "1")
    if f[14] == "1" then
      if redis.call("HINCRBY", KEYS[5], "/" .. f[2], -1) <= 0 then redis.call("HDEL", KEYS[5], "/" .. f[2]) end
      redis.call("HINCRBY", KEYS[5], "/" .. resource, 1)
    end
    return { "resent", resource, f[3], f[9] }
  end
end

redis.call("HSET", KEYS[2], "state", "answering", "outcome", "replied", "op", ARGV[4], "answer", ARGV[5],
  "lease", ARGV[7], "tries", 1)
redis.call("ZADD", KEYS[4], ARGV[7], ARGV[3])
local bare = string.match(f[5], "^[^/]*")
if redis.call("HINCRBY", KEYS[5], bare, -1) <= 0 then redis.call("HDEL", KEYS[5], bare) end
if f[14] == "1" and redis.call("HINCRBY", KEYS[5], "/" .. f[2], -1) <= 0 then redis.call("HDEL", KEYS[5], "/" .. f[2]) end
return { "claimed", f[5], f[6], f[7], f[3], f[2], f[8] }
