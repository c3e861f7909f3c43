-- sweep-3.lua: hand out the answers that are due, each to one caller only, and read the store's epoch.
-- - A pending request past its deadline gets the timeout answer (outcome "timeout", no stored answer).
-- - A request whose record is gone while its deadline is indexed lost it to eviction (maxmemory) or to the
--   safety-net TTL: it is answered with the timeout too, from the domain (its `to` is lost with the record).
-- - An answer whose lease ended without an acknowledgement (its replica died, or lost its XMPP link) is handed
--   out again with a new lease, at most ARGV[9] times in all; after that it is given up as a tombstone. A
--   hand-out whose result never reached its caller (a timeout, a WAIT that failed) is counted too, so the
--   bound is generous: it only ends an answer that no replica can acknowledge for minutes.
-- Either way the request stays "answering" under the caller's op until the caller acknowledges it (ack-1.lua).
-- The epoch is set if missing and its TTL refreshed: a store that lost its data shows a new epoch here, within
-- one sweep interval, however long the replicas have been up.
-- KEYS[1]  deadline index   KEYS[2]  epoch string
-- KEYS[3]  counts: pending per bare JID, and per resource ("/" resource) for records marked "ld" (forward-8.lua)
-- ARGV[1]  now (epoch ms)   ARGV[2]  limit   ARGV[3]  record key prefix   ARGV[4]  op
-- ARGV[5]  lease end (epoch ms)   ARGV[6]  a new random epoch, used if none is set   ARGV[7]  epoch TTL (ms)
-- ARGV[8]  tombstone TTL (ms)   ARGV[9]  hand-outs at most
-- ARGV[10] "1": the keys of versions before 0.2 (members `<requester>\n<id>`, no escapes; keys.ts, legacy)
-- Returns  {epoch, then 9 fields per answer: requester, id, to, type, resource, deadline, answer ("" for the
--          timeout), "1" when it was handed out before, and the member it is kept under (acknowledged by it)}
--! include lib/tombstone.lua
local MAX_TRIES = tonumber(ARGV[9])
local LEGACY = ARGV[10] == "1"
local function unescape(text)
  return (string.gsub(text, "%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end
local deadlines, prefix = KEYS[1], ARGV[3]
redis.call("SET", KEYS[2], ARGV[6], "NX")
redis.call("PEXPIRE", KEYS[2], ARGV[7])
local out = { redis.call("GET", KEYS[2]) }

local due = redis.call("ZRANGEBYSCORE", deadlines, "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
for _, member in ipairs(due) do
  local record = prefix .. member
  local f = redis.call("HMGET", record, "state", "requester", "id", "to", "type", "resource", "deadline",
    "answer", "tries", "outcome", "ld", "fop", "gen")
  local tries = tonumber(f[9] or "0")
  if f[1] == "pending" then
    redis.call("HSET", record, "state", "answering", "outcome", "timeout", "op", ARGV[4], "lease", ARGV[5],
      "tries", 1)
    redis.call("ZADD", deadlines, ARGV[5], member)
    local bare = string.match(f[2], "^[^/]*")
    if redis.call("HINCRBY", KEYS[3], bare, -1) <= 0 then redis.call("HDEL", KEYS[3], bare) end
    local load = "/" .. f[6]
    if f[11] == "1" and redis.call("HINCRBY", KEYS[3], load, -1) <= 0 then redis.call("HDEL", KEYS[3], load) end
    for i = 2, 7 do out[#out + 1] = f[i] end
    out[#out + 1] = ""
    out[#out + 1] = "0"
    out[#out + 1] = member
  elseif f[1] == "answering" and tries < MAX_TRIES then
    redis.call("HSET", record, "op", ARGV[4], "lease", ARGV[5], "tries", tries + 1)
    redis.call("ZADD", deadlines, ARGV[5], member)
    for i = 2, 7 do out[#out + 1] = f[i] end
    out[#out + 1] = f[8] or ""
    out[#out + 1] = "1"
    out[#out + 1] = member
  elseif f[1] == false then
    -- keys.ts, memberOf: the requester, a space, the id; both with `%XX` escapes.
    local requester, id
    if LEGACY then
      local newline = string.find(member, "\n", 1, true) or (#member + 1)
      requester, id = string.sub(member, 1, newline - 1), string.sub(member, newline + 1)
    else
      local space = string.find(member, " ", 1, true) or (#member + 1)
      requester, id = unescape(string.sub(member, 1, space - 1)), unescape(string.sub(member, space + 1))
    end
    redis.call("HSET", record, "state", "answering", "outcome", "timeout", "op", ARGV[4], "lease", ARGV[5],
      "tries", 1)
    redis.call("PEXPIRE", record, ARGV[8])
    redis.call("ZADD", deadlines, ARGV[5], member)
    local bare = string.match(requester, "^[^/]*")
    if redis.call("HINCRBY", KEYS[3], bare, -1) <= 0 then redis.call("HDEL", KEYS[3], bare) end
    for _, field in ipairs({ requester, id, "", "get", "", "0", "", "0", member }) do out[#out + 1] = field end
  else
    -- Answered, or handed out MAX_TRIES times: nothing left to deliver.
    redis.call("ZREM", deadlines, member)
    if f[1] == "answering" then tombstone(record, f[10] or "replied", f[12], f[13], ARGV[8]) end
  end
end
return out
