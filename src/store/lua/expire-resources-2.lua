-- expire-resources-2.lua: after a (re)connect and a presence probe, forget the resources whose presence was
-- not confirmed since the probe (their unavailable presence was missed while no replica was connected).
-- KEYS[1]  resources hash (resource -> epoch ms last seen available)   KEYS[2]  gone (sorted set)
-- ARGV[1]  confirmed since (epoch ms)   ARGV[2]  now (epoch ms)   ARGV[3]  TTL of the gone hash (ms)
-- Returns  the resources removed
local removed = {}
local all = redis.call("HGETALL", KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < tonumber(ARGV[1]) then
    redis.call("HDEL", KEYS[1], all[i])
    redis.call("ZADD", KEYS[2], ARGV[2], all[i])
    removed[#removed + 1] = all[i]
  end
end
if #removed > 0 then
  redis.call("PEXPIRE", KEYS[2], ARGV[3])
end
return removed
