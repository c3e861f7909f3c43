-- service-state-3.lua: the service's own presence (README, "Service presence"), computed from the online
-- resources of the implementing account, and whether it changed since it was last computed: the one caller that
-- sees the change broadcasts it, whichever replica it is.
-- KEYS[1]  resources hash (the online resources)
-- KEYS[2]  presence hash (resource -> priority, show, status and caps ver, separated by 0x1F)
-- KEYS[3]  service state string (the last state computed)
-- ARGV[1]  TTL of the state (ms)
-- Returns  {"1" changed | "0", state}: "unavailable" when no resource is online, else "available", show and
--          status of the resource with the highest priority (ties: the first by name), separated by 0x1F
local best, bestPriority, bestName
for _, name in ipairs(redis.call("HKEYS", KEYS[1])) do
  local info = redis.call("HGET", KEYS[2], name) or "0\31\31"
  local priority = tonumber(string.match(info, "^([^\31]*)")) or 0
  if best == nil or priority > bestPriority or (priority == bestPriority and name < bestName) then
    best, bestPriority, bestName = info, priority, name
  end
end
local state = "unavailable"
if best then state = "available\31" .. (string.match(best, "^[^\31]*\31([^\31]*\31[^\31]*)") or "\31") end
local old = redis.call("GET", KEYS[3])
redis.call("SET", KEYS[3], state, "PX", ARGV[1])
if old == state then return { "0", state } end
return { "1", state }
