-- routing-view-3.lua: the online resources with their presence, and the cached entries of their caps vers, read
-- in one step (messages are routed from it, and disco#info to the domain may be answered from it).
-- KEYS[1]  resources hash   KEYS[2]  presence hash   KEYS[3]  caps hash
-- Returns  {resource count, then per resource: name, presence ("" when none; lib/choose.lua format), then per
--          distinct ver with a cached entry: ver, entry}
local names = redis.call("HKEYS", KEYS[1])
local out = { #names }
if #names == 0 then return out end
local infos = redis.call("HMGET", KEYS[2], unpack(names))
local vers, seen = {}, {}
for i, name in ipairs(names) do
  local info = infos[i] or ""
  out[#out + 1] = name
  out[#out + 1] = info
  local ver = string.match(info, "^[^\31]*\31[^\31]*\31[^\31]*\31(.+)$")
  if ver and not seen[ver] then
    seen[ver] = true
    vers[#vers + 1] = ver
  end
end
for _, ver in ipairs(vers) do
  local entry = redis.call("HGET", KEYS[3], ver)
  if entry then
    out[#out + 1] = ver
    out[#out + 1] = entry
  end
end
return out
