-- Settle (or release, with actual = 0) a reservation: drop the hold, add the real cost.
-- Idempotent per rid for the hold; the cost is added once per call (callers settle once).
-- If the hold already expired, the real cost is still added: money spent is never lost.
-- KEYS: per scope i, KEYS[2i-1] = hash, KEYS[2i] = reservation ZSET
-- ARGV: rid, actual, n, then per scope: expire_at_ms
-- Returns {spent_1, ..., spent_n}
local rid, actual, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local amt = redis.call('HGET', h, 'r:' .. rid)
  if amt then
    -- never "-0": Lua's -0 reaches Redis as "-0", which HINCRBY refuses (a free model reserves 0)
    if tonumber(amt) ~= 0 then redis.call('HINCRBY', h, 'reserved', -tonumber(amt)) end
    redis.call('HDEL', h, 'r:' .. rid)
    redis.call('ZREM', z, rid)
  end
  local spent
  if actual > 0 then
    spent = redis.call('HINCRBY', h, 'spent', actual)
    redis.call('PEXPIREAT', h, tonumber(ARGV[3 + i]))
  else
    spent = tonumber(redis.call('HGET', h, 'spent') or '0')
  end
  out[i] = spent
end
return out
