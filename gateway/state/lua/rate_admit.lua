-- Rate-limit admission: one decision over several limits, all or nothing.
-- Sliding-window log: every admitted request is a ZSET member "<rid>|<cost>" scored by
-- its Redis TIME in ms; a request is admitted when, for every limit, the cost still in
-- the last window_ms plus this cost is <= limit. So NO window of window_ms (any start)
-- ever holds more than `limit`. A window_ms of 0 means a fixed calendar window (monthly
-- quota): a plain counter that expires at reset_ms.
-- KEYS: per limit i, KEYS[2i-1] = log (ZSET) or counter, KEYS[2i] = running total
-- ARGV: rid, n, then per limit: limit, window_ms, cost, reset_ms
-- Returns {admitted(1|0), failing index (0 = none), now_ms, remaining_1, reset_1, ...}
local now
if KEYS[#KEYS] == '__clock__' then
  now = tonumber(ARGV[#ARGV])  -- tests only: a fake clock (the key list ends with '__clock__')
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rid = ARGV[1]
local n = tonumber(ARGV[2])
local used = {}
local failing = 0
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local limit, window, cost = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local log, total = KEYS[2 * i - 1], KEYS[2 * i]
  local u
  if window > 0 then
    local cutoff = now - window
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
    if #old > 0 then
      local gone = 0
      for _, m in ipairs(old) do gone = gone + tonumber(string.match(m, '|(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
      redis.call('DECRBY', total, gone)
    end
    u = tonumber(redis.call('GET', total) or '0')
    if u < 0 then u = 0 end
  else
    u = tonumber(redis.call('GET', log) or '0')
  end
  used[i] = u
  if failing == 0 and u + cost > limit then failing = i end
end
local out = {failing == 0 and 1 or 0, failing, now}
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local limit, window, cost, reset = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local log, total = KEYS[2 * i - 1], KEYS[2 * i]
  local u = used[i]
  if failing == 0 then
    u = u + cost
    if window > 0 then
      redis.call('ZADD', log, now, rid .. '|' .. cost)
      redis.call('INCRBY', total, cost)
      redis.call('PEXPIRE', log, window + 1000)
      redis.call('PEXPIRE', total, window + 1000)
    else
      redis.call('INCRBY', log, cost)
      redis.call('PEXPIREAT', log, reset + 86400000)
    end
  end
  if window > 0 then
    -- when does enough capacity free up for one more request of this cost?
    reset = now + window
    local need = u + cost - limit
    if failing ~= 0 and i ~= failing then need = 1 end
    if need < 1 then need = 1 end
    local acc, start = 0, 0
    while true do
      local entries = redis.call('ZRANGE', log, start, start + 63, 'WITHSCORES')
      if #entries == 0 then break end
      local found = false
      for j = 1, #entries, 2 do
        acc = acc + tonumber(string.match(entries[j], '|(%d+)$'))
        if acc >= need then reset = tonumber(entries[j + 1]) + window; found = true; break end
      end
      if found then break end
      start = start + 64
    end
  end
  local rem = limit - u
  if rem < 0 then rem = 0 end
  out[#out + 1] = rem
  out[#out + 1] = reset
end
return out
