-- queue-message-3.lua: keep a requester's message while no resource of the implementing account is online
-- (README, "Messages, both ways"), within the bounds per requester and in total.
-- KEYS[1]  message queue (list, oldest first)   KEYS[2]  queued count per bare JID   KEYS[3]  resources hash
-- ARGV[1]  the entry (queued-at ms, requester, address it was sent to, message; see store/redis.ts)
-- ARGV[2]  the requester's bare JID   ARGV[3]  most per requester   ARGV[4]  most in total   ARGV[5]  TTL (ms)
-- Returns  "queued" | "online" (a resource is online: forward it instead) | "requester" | "total" (a bound)
if redis.call("HLEN", KEYS[3]) > 0 then return "online" end
if tonumber(redis.call("HGET", KEYS[2], ARGV[2]) or "0") >= tonumber(ARGV[3]) then return "requester" end
if redis.call("LLEN", KEYS[1]) >= tonumber(ARGV[4]) then return "total" end
redis.call("RPUSH", KEYS[1], ARGV[1])
redis.call("HINCRBY", KEYS[2], ARGV[2], 1)
redis.call("PEXPIRE", KEYS[1], ARGV[5])
redis.call("PEXPIRE", KEYS[2], ARGV[5])
return "queued"
