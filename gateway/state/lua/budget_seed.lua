-- Initialise a budget scope from the system of record (the usage store).
-- mode "seed": only if not yet seeded; spent = max(current, from_store), so a cost
-- settled while the scope was unseeded is not lost and spend never goes down.
-- mode "rebuild": the store is authoritative; spent = from_store (reservations kept).
-- KEYS: hash; ARGV: spent, expire_at_ms, mode. Returns the resulting spent.
local h = KEYS[1]
local spent, expire_at, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if mode == 'seed' then
  if redis.call('HEXISTS', h, 'seeded') == 1 then return tonumber(redis.call('HGET', h, 'spent') or '0') end
  local cur = tonumber(redis.call('HGET', h, 'spent') or '0')
  if cur > spent then spent = cur end
end
redis.call('HSET', h, 'spent', spent, 'seeded', 1)
redis.call('PEXPIREAT', h, expire_at)
return spent
