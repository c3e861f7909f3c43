-- subscribe-1.lua: remember a subscriber to the service's presence, within the bound on subscribers.
-- KEYS[1]  subscribers set (bare JIDs)
-- ARGV[1]  the subscriber's bare JID   ARGV[2]  most subscribers
-- Returns  1 (remembered, or already), 0 (the bound is reached: refused)
if redis.call("SISMEMBER", KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call("SCARD", KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call("SADD", KEYS[1], ARGV[1])
return 1
