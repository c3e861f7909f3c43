-- resource-gone-5.lua: unavailable presence (or a presence error) from one resource, or from the bare JID.
-- The resource stops being routed to and is remembered as gone (a `set` bounced by it later provably never
-- arrived); pending `get` requests that were sent to it move once to another online resource, chosen as a new
-- request would be (lib/choose.lua, without a namespace: the record keeps none), and the caller
-- sends them again. The deadline index is scanned a chunk per call (the caller passes the returned cursor back
-- until it is 0), so no call blocks Redis for long however many requests are pending.
-- KEYS[1]  resources hash   KEYS[2]  gone (sorted set: resource -> when)   KEYS[3]  deadline index
-- KEYS[4]  counts ("/" resource: pending requests sent to it, for records marked "ld"; forward-8.lua)
-- KEYS[5]  presence hash
-- ARGV[1]  now (epoch ms)   ARGV[2]  TTL of the gone set (ms)   ARGV[3]  the resource; empty for all of them
-- ARGV[4]  record key prefix (same hash tag)   ARGV[5]  pick in [0, 1)   ARGV[6]  cursor (0 on the first call)
-- ARGV[7]  chunk size   ARGV[8]  how long a resource is remembered as gone (ms)
-- ARGV[9]  strategy   ARGV[10] "1": highest priority only   ARGV[11] requests moved by earlier calls (0 first)
-- The k-th moved request is chosen with pick (ARGV[5] + k * 0.618...) mod 1, so random spreads them.
-- Returns  {next cursor (0: done), moved so far, then 5 fields per moved request: requester, id, new resource, payload,
--          generation}
--! include lib/choose.lua
local cursor, chunk = tonumber(ARGV[6]), tonumber(ARGV[7])
if cursor == 0 then
  local gone
  if ARGV[3] == "" then
    gone = redis.call("HKEYS", KEYS[1])
    redis.call("DEL", KEYS[1])
  else
    gone = { ARGV[3] }
    redis.call("HDEL", KEYS[1], ARGV[3])
  end
  for _, resource in ipairs(gone) do
    redis.call("ZADD", KEYS[2], ARGV[1], resource)
  end
  -- Bounded in time: only a bounce within a request's lifetime asks whether its resource was gone.
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", tonumber(ARGV[1]) - tonumber(ARGV[8]))
  redis.call("PEXPIRE", KEYS[2], ARGV[2])
end

local moved = tonumber(ARGV[11])
local out = { 0, moved }
local names = redis.call("HKEYS", KEYS[1])
if ARGV[3] == "" or #names == 0 then
  return out
end
local members = redis.call("ZRANGE", KEYS[3], cursor, cursor + chunk - 1)
for i, member in ipairs(members) do
  local key = ARGV[4] .. member
  local f = redis.call("HMGET", key, "state", "resource", "type", "retried", "requester", "id", "payload", "gen", "ld")
  if f[1] == "pending" and f[2] == ARGV[3] and f[3] == "get" and f[4] ~= "1" and f[7] and f[7] ~= "" then
    local x = tonumber(ARGV[5]) + moved * 0.6180339887498949
    local resource = choose(names, { presence = KEYS[5], counts = KEYS[4] },
      { strategy = ARGV[9], highest = ARGV[10], pick = x - math.floor(x), requester = f[5], namespace = "", now = 0 })
    if resource == nil then break end
    moved = moved + 1
    out[2] = moved
    redis.call("HSET", key, "resource", resource, "retried", "1")
    if f[9] == "1" then
      if redis.call("HINCRBY", KEYS[4], "/" .. f[2], -1) <= 0 then redis.call("HDEL", KEYS[4], "/" .. f[2]) end
      redis.call("HINCRBY", KEYS[4], "/" .. resource, 1)
    end
    out[#out + 1] = f[5]
    out[#out + 1] = f[6]
    out[#out + 1] = resource
    out[#out + 1] = f[7]
    out[#out + 1] = f[8] or "0"
  end
end
if #members == chunk then out[1] = cursor + chunk end
return out
