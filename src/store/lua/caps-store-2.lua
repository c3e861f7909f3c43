-- caps-store-2.lua: keep what a disco#info answer said about a caps ver (XEP-0115 section 5.4), and end the
-- query that stood for it. Verified features are kept for at most ARGV[4] vers, the oldest dropped first.
-- KEYS[1]  caps hash (ver -> entry; "?" ver -> query stands until)   KEYS[2]  caps order (ver -> stored at)
-- ARGV[1]  ver   ARGV[2]  entry (store/caps-entry.ts)   ARGV[3]  now (epoch ms)   ARGV[4]  vers kept at most
-- ARGV[5]  TTL of the keys (ms)
-- Returns  the number of vers dropped to stay within the bound
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("HDEL", KEYS[1], "?" .. ARGV[1])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
local dropped = 0
local over = redis.call("ZCARD", KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, ver in ipairs(redis.call("ZPOPMIN", KEYS[2], over)) do
    -- ZPOPMIN returns member, score, member, score, ...
    dropped = dropped + 1
    if dropped % 2 == 1 then redis.call("HDEL", KEYS[1], ver) end
  end
  dropped = dropped / 2
end
redis.call("PEXPIRE", KEYS[1], ARGV[5])
redis.call("PEXPIRE", KEYS[2], ARGV[5])
return dropped
