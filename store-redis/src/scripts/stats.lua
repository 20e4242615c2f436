-- Reads one topic's counters and queue sizes: {meta hash fields..., input, work, dead}
-- as {{field, value, ...}, input, work, dead}.
return {
  redis.call('HGETALL', META),
  redis.call('ZCARD', READY) + redis.call('LLEN', FRESH) + redis.call('ZCARD', SCHEDULED),
  redis.call('HLEN', LEASES),
  redis.call('ZCARD', DEAD),
}
