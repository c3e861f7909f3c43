-- resource-available-4.lua: record that a resource of the implementing account is available, with what its
-- presence says (priority, show, status: the service's own presence is the highest-priority resource's).
-- Available presence reaches the component only through an approved subscription (RFC 6121 section 4.2.2),
-- so it also confirms the subscription flag and refreshes its TTL.
-- KEYS[1]  resources hash (resource -> epoch ms last seen available)
-- KEYS[2]  subscription flag
-- KEYS[3]  gone sorted set (the resource is no longer gone)
-- KEYS[4]  presence hash (resource -> priority, show and status, separated by 0x1F)
-- ARGV[1]  resource   ARGV[2]  now (epoch ms)   ARGV[3]  TTL of the keys (ms)   ARGV[4]  presence
-- Returns  1
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
redis.call("SET", KEYS[2], "1", "PX", ARGV[3])
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], ARGV[1], ARGV[4])
redis.call("PEXPIRE", KEYS[4], ARGV[3])
return 1
