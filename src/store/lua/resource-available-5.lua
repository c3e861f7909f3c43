-- resource-available-5.lua: record that a resource of the implementing account is available, with what its
-- presence says (priority, show, status: the service's own presence is the highest-priority resource's; and
-- the XEP-0115 caps ver, for routing by capability), and whether the caller should ask for the ver's features.
-- Available presence reaches the component only through an approved subscription (RFC 6121 section 4.2.2),
-- so it also confirms the subscription flag and refreshes its TTL.
-- KEYS[1]  resources hash (resource -> epoch ms last seen available)
-- KEYS[2]  subscription flag
-- KEYS[3]  gone sorted set (the resource is no longer gone)
-- KEYS[4]  presence hash (resource -> priority, show, status and ver, separated by 0x1F)
-- KEYS[5]  caps hash (ver -> features or "!" until; "?" ver -> until when a query stands; caps-entry.ts)
-- ARGV[1]  resource   ARGV[2]  now (epoch ms)   ARGV[3]  TTL of the keys (ms)   ARGV[4]  presence
-- ARGV[5]  ver ("" without capabilities)   ARGV[6]  how long one query stands for all (ms)
-- Returns  1: the caller asks the resource for the ver's features (XEP-0115 section 6.3), once for all
--          replicas while they are unknown; 0: known, asked by someone already, or no capabilities
--! include lib/choose.lua
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
redis.call("SET", KEYS[2], "1", "PX", ARGV[3])
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], ARGV[1], ARGV[4])
redis.call("PEXPIRE", KEYS[4], ARGV[3])
if ARGV[5] == "" then return 0 end
local now = tonumber(ARGV[2])
-- Known, held unverifiable, or asked about already: nobody asks again.
if knowledge_of(KEYS[5], ARGV[5], now) ~= "unknown" then return 0 end
redis.call("HSET", KEYS[5], "?" .. ARGV[5], now + tonumber(ARGV[6]))
redis.call("PEXPIRE", KEYS[5], ARGV[3])
return 1
