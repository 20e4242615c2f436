-- One task of this topic as stored: {hash fields, lease or nil}. ARGV[5] id.
local id = ARGV[5]
return {
  redis.call('HGETALL', task_key(id)),
  redis.call('HGET', LEASES, id),
}
