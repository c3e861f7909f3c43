-- ack-1.lua: answers were sent: each request whose answer the caller still holds (same op) becomes a tombstone,
-- its state and forward op (fop) only, so a second reply is told apart from an unknown one and a retried forward
-- knows it was answered. An answer whose lease passed to another replica is left to that one.
-- KEYS[1]  deadline index (names the domain's hash tag; the records share it)
-- ARGV[1]  record key prefix   ARGV[2]  tombstone TTL (ms)   ARGV[3..]  pairs of member, op
-- Returns  the number of answers acknowledged
--! include lib/tombstone.lua
local done = 0
for i = 3, #ARGV, 2 do
  local key = ARGV[1] .. ARGV[i]
  local f = redis.call("HMGET", key, "state", "op", "outcome", "fop", "gen")
  if f[1] == "answering" and f[2] == ARGV[i + 1] then
    tombstone(key, f[3] or "replied", f[4], f[5], ARGV[2])
    redis.call("ZREM", KEYS[1], ARGV[i])
    done = done + 1
  end
end
return done
