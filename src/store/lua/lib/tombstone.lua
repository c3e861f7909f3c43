-- lib/tombstone.lua: what is left of an answered request (ack-1.lua, sweep-3.lua): its state, the op of the
-- forward that recorded it (a retried forward learns it was answered) and its generation when above 0 (a reused
-- id gets the next one), for the tombstone lifetime. The record is written anew rather than stripped field by
-- field: Redis keeps a hash in its large encoding once a field (the payload) outgrew the compact one, so a
-- stripped record would keep ~400 bytes where a new one takes ~100.
local function tombstone(key, state, fop, gen, ttl)
  local fields = { "state", state }
  if fop then
    fields[#fields + 1] = "fop"
    fields[#fields + 1] = fop
  end
  if gen and gen ~= "0" then
    fields[#fields + 1] = "gen"
    fields[#fields + 1] = gen
  end
  redis.call("DEL", key)
  redis.call("HSET", key, unpack(fields))
  redis.call("PEXPIRE", key, ttl)
end
