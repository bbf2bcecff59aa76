-- Give a concurrency slot back. KEYS: lease ZSET; ARGV: lease id. Returns leases left.
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])
