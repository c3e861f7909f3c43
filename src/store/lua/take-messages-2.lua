-- take-messages-2.lua: take queued messages off the queue, oldest first: all of them up to a count (a resource
-- came online), or only those queued before a time (their lifetime ended). Each is taken by one caller only.
-- KEYS[1]  message queue (list, oldest first)   KEYS[2]  queued count per bare JID
-- ARGV[1]  most to take   ARGV[2]  take only entries queued before this (epoch ms); "" for any
-- Returns  the entries taken, oldest first
local out = {}
local before = tonumber(ARGV[2])
for _ = 1, tonumber(ARGV[1]) do
  local head = redis.call("LINDEX", KEYS[1], 0)
  if not head then break end
  local queuedAt, requester = string.match(head, "^(%d+)\31([^\31]*)\31")
  if before and tonumber(queuedAt) >= before then break end
  redis.call("LPOP", KEYS[1])
  local bare = string.match(requester or "", "^[^/]*")
  if redis.call("HINCRBY", KEYS[2], bare, -1) <= 0 then redis.call("HDEL", KEYS[2], bare) end
  out[#out + 1] = head
end
return out
