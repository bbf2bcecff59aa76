-- Concurrency slot for a provider key: admit while fewer than `limit` leases are live.
-- Leases expire (a replica that died holding one frees it after ttl_ms).
-- KEYS: lease ZSET; ARGV: limit, ttl_ms, lease id. Returns {acquired(1|0), in_flight}
local now
if KEYS[#KEYS] == '__clock__' then
  now = tonumber(ARGV[#ARGV])  -- tests only: a fake clock (the key list ends with '__clock__')
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local z = KEYS[1]
local limit, ttl, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local count = redis.call('ZCARD', z)
if count >= limit then return {0, count} end
redis.call('ZADD', z, now + ttl, lease)
redis.call('PEXPIRE', z, ttl + 1000)
return {1, count + 1}
