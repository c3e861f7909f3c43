-- claim: accept a reply to a pending request exactly once, and only from the resource it was sent to.
-- KEYS[1] the request's record hash, KEYS[2] deadlines zset
-- ARGV[1] resource the reply came from, ARGV[2] member, ARGV[3] tombstone TTL (ms)
-- Returns {"claimed", requester, id, to, type, resource, deadline} | {"unknown"} | {"duplicate"} | {"late"}
--   | {"wrong-resource"}
local record, deadlines = KEYS[1], KEYS[2]
local f = redis.call("HMGET", record, "state", "requester", "id", "to", "type", "resource", "deadline")
local state = f[1]

if state == "replied" then return { "duplicate" } end
if state == "timeout" then return { "late" } end
if state ~= "pending" then return { "unknown" } end
-- Another resource must not answer for the one the request went to; the request stays pending.
if f[6] ~= ARGV[1] then return { "wrong-resource" } end

-- Keep the record as a tombstone, its state only, so a second reply is told apart from an unknown one.
redis.call("HSET", record, "state", "replied")
redis.call("HDEL", record, "requester", "id", "to", "type", "resource", "deadline", "retried", "payload")
redis.call("PEXPIRE", record, ARGV[3])
redis.call("ZREM", deadlines, ARGV[2])
return { "claimed", f[2], f[3], f[4], f[5], f[6], f[7] }
