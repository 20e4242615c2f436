-- Reads one topic's counters and queue sizes:
-- {{meta field, value, ...}, input, work, dead, completed, cancelled}.
return {
  redis.call('HGETALL', META),
  redis.call('ZCARD', READY) + redis.call('LLEN', FRESH) + redis.call('ZCARD', SCHEDULED),
  redis.call('HLEN', LEASES),
  redis.call('ZCARD', DEAD),
  redis.call('ZCARD', COMPLETED),
  redis.call('ZCARD', CANCELLED),
}
