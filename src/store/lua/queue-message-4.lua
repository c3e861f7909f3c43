-- queue-message-4.lua: keep a requester's message while no resource of the implementing account takes messages
-- (none online, or all with negative priority: RFC 6121 section 8.5.2.1.1 treats that as offline; README,
-- "Messages, both ways"), within the bounds per requester and in total.
-- KEYS[1]  message queue (list, oldest first)   KEYS[2]  queued count per bare JID   KEYS[3]  resources hash
-- KEYS[4]  presence hash (resource -> priority first, 0x1F after it)
-- ARGV[1]  the entry (queued-at ms, requester, address it was sent to, message; see store/redis-messages.ts)
-- ARGV[2]  the requester's bare JID   ARGV[3]  most per requester   ARGV[4]  most in total   ARGV[5]  TTL (ms)
-- Returns  "queued" | "online" (a resource takes it: forward it instead) | "requester" | "total" (a bound)
local names = redis.call("HKEYS", KEYS[3])
if #names > 0 then
  for _, info in ipairs(redis.call("HMGET", KEYS[4], unpack(names))) do
    if (tonumber(string.match(info or "", "^[^\31]*") or "") or 0) >= 0 then return "online" end
  end
end
if tonumber(redis.call("HGET", KEYS[2], ARGV[2]) or "0") >= tonumber(ARGV[3]) then return "requester" end
if redis.call("LLEN", KEYS[1]) >= tonumber(ARGV[4]) then return "total" end
redis.call("RPUSH", KEYS[1], ARGV[1])
redis.call("HINCRBY", KEYS[2], ARGV[2], 1)
redis.call("PEXPIRE", KEYS[1], ARGV[5])
redis.call("PEXPIRE", KEYS[2], ARGV[5])
return "queued"
