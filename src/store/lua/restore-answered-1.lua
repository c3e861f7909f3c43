-- restore-answered-1.lua: after the store lost its data, a replica writes back the tombstones of the requests
-- it answered recently, so that no other replica's fallback answers them a second time.
-- KEYS[1]  deadline index (names the domain's hash tag; the records share it)
-- ARGV[1]  record key prefix   ARGV[2]  tombstone TTL (ms)   ARGV[3..]  members answered
-- Returns  the number of tombstones written
local written = 0
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  if redis.call("EXISTS", key) == 0 then
    redis.call("HSET", key, "state", "replied")
    redis.call("PEXPIRE", key, ARGV[2])
    written = written + 1
  end
end
return written
