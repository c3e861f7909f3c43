-- sweep: claim up to `limit` requests whose deadline is at or before `now`; each is returned to one caller only.
-- KEYS[1] deadlines zset
-- ARGV[1] now (epoch ms), ARGV[2] limit, ARGV[3] record key prefix (the member is appended), ARGV[4] tombstoneMs
-- Returns a flat array, six entries per claimed request: requester, id, to, type, resource, deadline
-- Records are built from ARGV[3]: they share the deadlines key's {hash tag}, so this stays in one Cluster slot.
local deadlines, prefix = KEYS[1], ARGV[3]
local due = redis.call("ZRANGEBYSCORE", deadlines, "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
local out = {}

for _, member in ipairs(due) do
  redis.call("ZREM", deadlines, member)
  local record = prefix .. member
  local f = redis.call("HMGET", record, "state", "requester", "id", "to", "type", "resource", "deadline")
  -- A missing record (expired safety net) or an answered one has nothing left to time out.
  if f[1] == "pending" then
    redis.call("HSET", record, "state", "timeout")
    redis.call("HDEL", record, "requester", "id", "to", "type", "resource", "deadline", "retried", "payload")
    redis.call("PEXPIRE", record, ARGV[4])
    for i = 2, 7 do out[#out + 1] = f[i] end
  end
end

return out
