-- forward-8.lua: admit a request, choose an online resource (lib/choose.lua: presence, capabilities, strategy)
-- and record the request as pending, in one step.
-- Idempotent per operation: a retry with the same op (its first outcome unknown: timeout, connection lost)
-- returns what the first execution did instead of a duplicate.
-- Generation: an id reused while the tombstone of its earlier request lives gets the next generation, which the
-- proxy adds to the id it forwards, so a late answer to the earlier request cannot answer this one.
-- KEYS[1]  resources hash (resource -> last seen)   KEYS[2]  the request's record hash
-- KEYS[3]  deadline index (member -> deadline or lease)   KEYS[4]  subscription flag (without it the store
--          does not know the target's presence: lost or never learnt)
-- KEYS[5]  counts hash: bare JID -> its pending requests; "/" resource -> pending requests sent to it (counted
--          under least-pending, the record marked "ld"); "" -> the round-robin rotation
-- KEYS[6]  presence hash (resource -> priority, show, status, caps ver)   KEYS[7]  caps hash (lib/choose.lua)
-- KEYS[8]  gone sorted set (recently gone resources: sticky counts a request that would have gone there as moved)
-- ARGV[1]  requester   ARGV[2]  id   ARGV[3]  to   ARGV[4]  type   ARGV[5]  deadline (epoch ms)
-- ARGV[6]  pick in [0, 1)   ARGV[7]  member   ARGV[8]  record TTL (ms)   ARGV[9]  index and count TTL (ms)
-- ARGV[10] payload kept for failover ("" when too large to keep)   ARGV[11] op
-- ARGV[12] the requester's bare JID   ARGV[13] pending limit per bare JID   ARGV[14] pending limit in total
-- ARGV[15] strategy   ARGV[16] "1": highest priority only   ARGV[17] the payload's namespace   ARGV[18] now
-- ARGV[19] "1": refresh the TTLs of the deadline index and the counts (the caller asks about once a second;
--          they are also set whenever the index was empty, so a key never lives long without one)
-- Returns  {"forwarded", resource, generation, negative, capability, drained, priority skipped, moved "1"/"0"}
--          | {"answered"} | {"no-resource"} | {"presence-unknown"} | {"duplicate"}
--          | {"limited", "requester" | "total"} | {"none", "no-eligible" | "no-capable" | "capabilities-pending"}
--! include lib/choose.lua
local resources, record, deadlines, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[5]

local f = redis.call("HMGET", record, "state", "fop", "resource", "gen")
if f[2] == ARGV[11] then
  if f[1] == "pending" then return { "forwarded", f[3], f[4] or "0" } end
  return { "answered" }
end
-- A tombstone (replied / timeout) is overwritten by the new request; a live one blocks.
if f[1] == "pending" or f[1] == "answering" then
  return { "duplicate" }
end

local names = redis.call("HKEYS", resources)
if #names == 0 then
  if redis.call("EXISTS", KEYS[4]) == 0 then
    return { "presence-unknown" }
  end
  return { "no-resource" }
end
-- The requester's count is raised first (one command instead of a read and a write) and lowered again when the
-- request is not recorded after all.
local function uncount()
  if redis.call("HINCRBY", counts, ARGV[12], -1) <= 0 then redis.call("HDEL", counts, ARGV[12]) end
end
if redis.call("HINCRBY", counts, ARGV[12], 1) > tonumber(ARGV[13]) then
  uncount()
  return { "limited", "requester" }
end
local indexed = redis.call("ZCARD", deadlines)
if indexed >= tonumber(ARGV[14]) then
  uncount()
  return { "limited", "total" }
end
local resource, skipped, moved = choose(names, { presence = KEYS[6], caps = KEYS[7], counts = counts, gone = KEYS[8] },
  { strategy = ARGV[15], highest = ARGV[16], pick = ARGV[6], requester = ARGV[1], namespace = ARGV[17],
    now = tonumber(ARGV[18]) })
if resource == nil then
  uncount()
  return { "none", skipped }
end

local gen = 0
if f[1] == "replied" or f[1] == "timeout" then gen = tonumber(f[4] or "0") + 1 end
-- A tombstone is replaced whole (a fresh id has no record: nothing to delete).
if f[1] then redis.call("DEL", record) end
local fields = { "requester", ARGV[1], "id", ARGV[2], "to", ARGV[3], "type", ARGV[4], "resource", resource,
  "deadline", ARGV[5], "state", "pending", "payload", ARGV[10], "fop", ARGV[11] }
if gen > 0 then
  fields[#fields + 1] = "gen"
  fields[#fields + 1] = gen
end
if ARGV[15] == "least-pending" then
  fields[#fields + 1] = "ld"
  fields[#fields + 1] = "1"
  redis.call("HINCRBY", counts, "/" .. resource, 1)
end
redis.call("HSET", record, unpack(fields))
redis.call("PEXPIRE", record, ARGV[8])
redis.call("ZADD", deadlines, ARGV[5], ARGV[7])
if ARGV[19] == "1" or indexed == 0 then
  redis.call("PEXPIRE", deadlines, ARGV[9])
  redis.call("PEXPIRE", counts, ARGV[9])
end

return { "forwarded", resource, tostring(gen), skipped[1], skipped[2], skipped[3], skipped[4], moved }
