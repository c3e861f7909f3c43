-- claim-3.lua: accept a reply to a pending request exactly once, only from the resource it was sent to, and
-- keep the reply as the request's answer until the caller acknowledges that it was sent (ack-1.lua). If the
-- caller dies first, the answer's lease ends and the sweep hands it to another replica (sweep-3.lua). The kept
-- payload and the balancing marks stay until the tombstone is made (ack-1.lua): a claimed record is never moved.
-- Idempotent per operation: a retry with the same op while the lease runs returns "claimed" again.
-- KEYS[1]  the request's record hash   KEYS[2]  deadline index
-- KEYS[3]  counts: pending per bare JID, and per resource ("/" resource) for records marked "ld" (forward-8.lua)
-- ARGV[1]  resource the reply came from   ARGV[2]  member   ARGV[3]  op   ARGV[4]  the reply, serialized
-- ARGV[5]  now (epoch ms)   ARGV[6]  lease end (epoch ms)   ARGV[7]  the generation the reply's id carries
-- Returns  {"claimed", requester, id, to, type, resource, deadline} | {"unknown"} | {"duplicate"} | {"late"}
--          | {"wrong-resource"} | {"stale"} (an answer to an earlier request with the same id)
local record, deadlines = KEYS[1], KEYS[2]
local f = redis.call("HMGET", record, "state", "requester", "id", "to", "type", "resource", "deadline", "op",
  "lease", "outcome", "gen", "ld")
local state = f[1]

if state == "answering" then
  if f[8] == ARGV[3] and tonumber(f[9]) > tonumber(ARGV[5]) then
    return { "claimed", f[2], f[3], f[4], f[5], f[6], f[7] }
  end
  if f[10] == "timeout" then return { "late" } end
  return { "duplicate" }
end
if state == "replied" then return { "duplicate" } end
if state == "timeout" then return { "late" } end
if state ~= "pending" then return { "unknown" } end
if (f[11] or "0") ~= ARGV[7] then return { "stale" } end
-- Another resource must not answer for the one the request went to; the request stays pending.
if f[6] ~= ARGV[1] then return { "wrong-resource" } end

redis.call("HSET", record, "state", "answering", "outcome", "replied", "op", ARGV[3], "answer", ARGV[4],
  "lease", ARGV[6], "tries", 1)
redis.call("ZADD", deadlines, ARGV[6], ARGV[2])
local bare = string.match(f[2], "^[^/]*")
if redis.call("HINCRBY", KEYS[3], bare, -1) <= 0 then redis.call("HDEL", KEYS[3], bare) end
if f[12] == "1" and redis.call("HINCRBY", KEYS[3], "/" .. f[6], -1) <= 0 then redis.call("HDEL", KEYS[3], "/" .. f[6]) end
return { "claimed", f[2], f[3], f[4], f[5], f[6], f[7] }
