-- epoch-1.lua: the identity of the store's current data set. It changes only when the data is lost (a Redis
-- restarted without persistence, or a failover to a replica that lagged): a replica that sees another epoch
-- than before knows that records of its pending requests may be gone.
-- KEYS[1]  epoch string
-- ARGV[1]  a new random epoch, used if none is set   ARGV[2]  TTL (ms), refreshed on every call
-- Returns  the current epoch
redis.call("SET", KEYS[1], ARGV[1], "NX")
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return redis.call("GET", KEYS[1])
