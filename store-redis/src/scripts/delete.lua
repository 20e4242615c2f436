-- Removes tasks of this topic from whichever queue holds them and frees their unique keys.
-- ARGV[5..] ids. Returns per id 1 (deleted) or 0 (not a task of this topic).
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = task_key(id)
  -- Dropping the lease makes the running claim's outcome stale.
  local leased = redis.call('HDEL', LEASES, id)
  if redis.call('EXISTS', key) == 1 or leased == 1 then
    local unique_key = redis.call('HGET', key, 'unique_key')
    if unique_key and redis.call('HGET', UNIQUE, unique_key) == id then
      redis.call('HDEL', UNIQUE, unique_key)
    end
    redis.call('ZREM', READY, id)
    redis.call('ZREM', SCHEDULED, id)
    redis.call('ZREM', DEAD, id)
    redis.call('ZREM', ALL, id)
    redis.call('DEL', key)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
