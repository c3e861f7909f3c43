-- request-out-3.lua: record a request of the implementing account to a requester (README, "Requests from the
-- implementing client") as pending, in the same record format as a forwarded request, so that claim-3, sweep-3
-- and ack-1 serve both directions: the record is keyed by the requester that must answer and the id the request
-- was sent with; `requester` and `to` name the resource that asked and the address it wrote to (who gets the
-- answer, and from where); `resource` is the full JID the answer must come from.
-- Idempotent per operation: a retry with the same op returns what the first execution did.
-- KEYS[1]  the request's record hash   KEYS[2]  deadline index   KEYS[3]  pending count per bare JID
-- ARGV[1]  the resource that asked (full JID)   ARGV[2]  its id   ARGV[3]  the address it wrote to
-- ARGV[4]  type   ARGV[5]  deadline (epoch ms)   ARGV[6]  member   ARGV[7]  record TTL (ms)
-- ARGV[8]  index and count TTL (ms)   ARGV[9]  op   ARGV[10]  the asker's bare JID
-- ARGV[11] the full JID that must answer   ARGV[12]  pending limit in total
-- Returns  {"forwarded"} | {"answered"} (a retry after the sweep answered it) | {"duplicate"} | {"limited"}
local record, deadlines, counts = KEYS[1], KEYS[2], KEYS[3]
local f = redis.call("HMGET", record, "state", "fop")
if f[2] == ARGV[9] then
  if f[1] == "pending" then return { "forwarded" } end
  return { "answered" }
end
if f[1] == "pending" or f[1] == "answering" then return { "duplicate" } end
if redis.call("ZCARD", deadlines) >= tonumber(ARGV[12]) then return { "limited" } end

redis.call("DEL", record)
redis.call("HSET", record, "requester", ARGV[1], "id", ARGV[2], "to", ARGV[3], "type", ARGV[4],
  "resource", ARGV[11], "deadline", ARGV[5], "state", "pending", "payload", "", "fop", ARGV[9])
redis.call("PEXPIRE", record, ARGV[7])
redis.call("ZADD", deadlines, ARGV[5], ARGV[6])
redis.call("PEXPIRE", deadlines, ARGV[8])
redis.call("HINCRBY", counts, ARGV[10], 1)
redis.call("PEXPIRE", counts, ARGV[8])
return { "forwarded" }
