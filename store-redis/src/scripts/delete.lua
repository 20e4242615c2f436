-- Removes tasks of this topic from whichever queue holds them and frees their unique keys.
-- ARGV[4..] ids. Returns per id 1 (deleted) or 0 (not a task of this topic).
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local rec = redis.call('HGET', TASKS, id)
  free_unique(id, parse_record(rec))
  -- Dropping the lease makes the running claim's outcome stale. An index entry without a
  -- record (corrupt data) is a task all the same, so that it can be deleted.
  local found = redis.call('HDEL', LEASES, id) + redis.call('ZREM', READY, id)
    + redis.call('ZREM', SCHEDULED, id) + redis.call('ZREM', DEAD, id)
    + redis.call('HDEL', TASKS, id)
  redis.call('ZREM', LATER, id)
  if found > 0 then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
