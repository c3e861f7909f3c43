-- claim-lost-2.lua: the forwarding replica's fallback, after the store's data was lost. Claims a request for a
-- timeout answer unless it was answered already; a request whose record is gone was answered by nobody, and a
-- tombstone is written so that no one answers it again.
-- KEYS[1]  the request's record hash   KEYS[2]  deadline index
-- ARGV[1]  member   ARGV[2]  tombstone TTL (ms)
-- Returns  1 when the caller must answer, 0 when it was answered already
local state = redis.call("HGET", KEYS[1], "state")
-- "answering": a replica holds its answer, and the sweep hands it to another if that one dies.
if state == "replied" or state == "timeout" or state == "answering" then
  return 0
end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "state", "timeout")
redis.call("PEXPIRE", KEYS[1], ARGV[2])
redis.call("ZREM", KEYS[2], ARGV[1])
return 1
