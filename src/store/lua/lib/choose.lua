-- lib/choose.lua: which online resource gets a new request, step for step as src/routing/choose.ts (README,
-- "Balancing"; test/store/choose-parity.test.ts runs both on the same inputs). Included by the scripts that
-- say `--! include lib/choose.lua`; it reads only the keys its caller passes.
-- 1. negative priority gets nothing new (RFC 6121 4.7.2.3); 2. with a namespace, a resource whose verified
-- features do not list it is skipped (XEP-0115), one being asked about is used only if nothing else could take
-- it; 3. show dnd/xa drains; 4. highest priority only, when asked; 5. the strategy.

-- Byte order: Lua's < on strings follows the server's locale (strcoll).
local function byte_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- "priority 0x1F show 0x1F status 0x1F ver" (older writers stop after status; no entry: all defaults).
local function presence_of(info)
  local out, start = {}, 1
  if info then
    while true do
      local stop = string.find(info, "\31", start, true)
      out[#out + 1] = string.sub(info, start, (stop or 0) - 1)
      if not stop then break end
      start = stop + 1
    end
  end
  local priority = tonumber(out[1] or "") or 0
  return priority, out[2] or "", out[4] or ""
end

-- The features behind a caps ver: the cached list ("\n"-separated lines), "unverified", "asking" or "unknown".
local function knowledge_of(caps, ver, now)
  local v = redis.call("HGET", caps, ver)
  if v then
    if string.sub(v, 1, 1) ~= "!" then return v end
    if tonumber(string.sub(v, 2)) > now then return "unverified" end
  end
  local asking = redis.call("HGET", caps, "?" .. ver)
  if asking and tonumber(asking) > now then return "asking" end
  return "unknown"
end

local function sticky_weight(requester, name)
  return tonumber(string.sub(redis.sha1hex(requester .. "\n" .. name), 1, 8), 16)
end

local function sticky_of(requester, names)
  local best, weight
  for _, name in ipairs(names) do
    local w = sticky_weight(requester, name)
    if best == nil or w > weight or (w == weight and byte_less(name, best)) then best, weight = name, w end
  end
  return best
end

local function at(list, fraction)
  local i = math.floor(fraction * #list) + 1
  if i > #list then i = #list end
  if i < 1 then i = 1 end
  return list[i]
end

-- k: {presence, caps, counts, gone} keys (caps only needed with a namespace; without gone, moved is not told).
-- a: {strategy, highest ("1"/"0"), pick, requester, namespace, now}.
-- Returns resource, {negative, capability, drained, priority}, moved ("1"/"0"); or nil and the reason:
-- "no-resource" | "no-eligible" | "no-capable" | "capabilities-pending".
local function choose(names, k, a)
  if #names == 0 then return nil, "no-resource" end
  table.sort(names, byte_less)
  local infos = redis.call("HMGET", k.presence, unpack(names))
  local list, online, negative = {}, {}, 0
  for i, name in ipairs(names) do
    local priority, show, ver = presence_of(infos[i])
    local c = { name = name, priority = priority, show = show, ver = ver }
    online[#online + 1] = c
    if priority >= 0 then list[#list + 1] = c else negative = negative + 1 end
  end
  if #list == 0 then return nil, "no-eligible" end

  local capability = 0
  if a.namespace ~= "" then
    local capable, asking, seen = {}, 0, {}
    local needle = "\nf " .. a.namespace .. "\n"
    for _, c in ipairs(list) do
      local known = "unknown"
      if c.ver ~= "" then
        known = seen[c.ver] or knowledge_of(k.caps, c.ver, a.now)
        seen[c.ver] = known
      end
      if known == "asking" then
        asking = asking + 1
      elseif known == "unknown" or known == "unverified" or string.find(known, needle, 1, true) then
        capable[#capable + 1] = c
      else
        capability = capability + 1
      end
    end
    if #capable == 0 then
      if asking > 0 then return nil, "capabilities-pending" end
      return nil, "no-capable"
    end
    capability = capability + asking
    list = capable
  end

  local steady = {}
  for _, c in ipairs(list) do
    if c.show ~= "dnd" and c.show ~= "xa" then steady[#steady + 1] = c end
  end
  local drained = 0
  if #steady > 0 and #steady < #list then
    drained = #list - #steady
    list = steady
  end

  local lower = 0
  if a.highest == "1" then
    local top
    for _, c in ipairs(list) do
      if top == nil or c.priority > top then top = c.priority end
    end
    local best = {}
    for _, c in ipairs(list) do
      if c.priority == top then best[#best + 1] = c end
    end
    lower = #list - #best
    list = best
  end

  local chosen = {}
  for i, c in ipairs(list) do chosen[i] = c.name end
  local resource
  if a.strategy == "round-robin" then
    local turn = redis.call("HINCRBY", k.counts, "", 1)
    resource = chosen[(turn - 1) % #chosen + 1]
  elseif a.strategy == "least-pending" then
    local loads = redis.call("HMGET", k.counts, unpack((function()
      local fields = {}
      for i, name in ipairs(chosen) do fields[i] = "/" .. name end
      return fields
    end)()))
    local least, tied = nil, {}
    for i, name in ipairs(chosen) do
      local load = tonumber(loads[i] or "0") or 0
      if least == nil or load < least then least, tied = load, { name }
      elseif load == least then tied[#tied + 1] = name end
    end
    resource = at(tied, tonumber(a.pick))
  elseif a.strategy == "sticky" then
    resource = sticky_of(a.requester, chosen)
  else
    resource = at(chosen, tonumber(a.pick))
  end

  local moved = "0"
  if a.strategy == "sticky" and k.gone then
    local gone = redis.call("ZRANGE", k.gone, 0, -1)
    -- Nothing left out and nobody gone: the choice is the requester's first among everyone (no hashing again).
    if #gone > 0 or #chosen < #online then
      local everyone = {}
      for i, c in ipairs(online) do everyone[i] = c.name end
      for _, name in ipairs(gone) do everyone[#everyone + 1] = name end
      if sticky_of(a.requester, everyone) ~= resource then moved = "1" end
    end
  end
  return resource, { negative, capability, drained, lower }, moved
end
