-- Budget reservation: admit only if spent + reserved + amount <= limit for EVERY scope.
-- Each scope is a HASH {spent, reserved, seeded, r:<rid> = amount} and a ZSET of
-- reservation ids scored by expiry (Redis TIME ms). Expired reservations (a replica
-- that died before settling) are released here first, so holds never leak.
-- A scope without `seeded` was never initialised (or Redis lost its data): the
-- caller must seed it from the store before anything is admitted against it.
-- KEYS: per scope i, KEYS[2i-1] = hash, KEYS[2i] = reservation ZSET
-- ARGV: rid, amount, ttl_ms, n, then per scope: limit, expire_at_ms
-- Returns {1, now} | {0, failing i, spent, reserved, now} | {-1, unseeded i, 0, 0, now}
local now
if KEYS[#KEYS] == '__clock__' then
  now = tonumber(ARGV[#ARGV])  -- tests only: a fake clock (the key list ends with '__clock__')
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rid, amount, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[4 + (i - 1) * 2 + 1])
  if redis.call('HEXISTS', h, 'seeded') == 0 then return {-1, i, 0, 0, now} end
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, r in ipairs(expired) do
    local amt = tonumber(redis.call('HGET', h, 'r:' .. r) or '0')
    if amt ~= 0 then redis.call('HINCRBY', h, 'reserved', -amt) end  -- never "-0" (see budget_settle)
    redis.call('HDEL', h, 'r:' .. r)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
  local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', h, 'reserved') or '0')
  if spent + reserved + amount > limit then return {0, i, spent, reserved, now} end
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local expire_at = tonumber(ARGV[4 + (i - 1) * 2 + 2])
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('HSET', h, 'r:' .. rid, amount)
  redis.call('ZADD', z, now + ttl, rid)
  redis.call('PEXPIREAT', h, expire_at)
  redis.call('PEXPIREAT', z, expire_at)
end
return {1, now}
