-- Removes tasks of this topic from whichever queue holds them and frees their unique keys.
-- ARGV[4..] ids. Returns per id 1 (deleted) or 0 (not a task of this topic).
local out = {}
-- Positions (0-based) in FRESH of the ids found there, removed together at the end.
local positions, marked = {}, {}
local head, tail = nil, nil
if redis.call('EXISTS', FRESH) == 1 then
  head = tonumber(redis.call('LINDEX', FRESH, 0))
  tail = tonumber(redis.call('LINDEX', FRESH, -1))
end
for i = 4, #ARGV do
  local id = ARGV[i]
  local rec = redis.call('HGET', TASKS, id)
  free_key(id, (record_unique(rec)))
  -- Dropping the lease makes the running claim's outcome stale. An index entry without a
  -- record (corrupt data) is a task all the same, so that it can be deleted.
  local found = redis.call('HDEL', LEASES, id) + redis.call('ZREM', READY, id)
    + redis.call('ZREM', SCHEDULED, id) + redis.call('ZREM', DEAD, id)
    + redis.call('ZREM', CANCELLED, id)
  local listed = redis.call('ZREM', COMPLETED, id)
  redis.call('ZREM', LATER, id)
  redis.call('ZREM', DUE, id)
  redis.call('ZREM', FINISHED, id)
  redis.call('HDEL', CANCELS, id)
  redis.call('HDEL', PROGRESS, id)
  -- A completed task in ENDS but not in COMPLETED was filed in an id-ordered FINISH_LOG
  -- (whose entry stays, stale, until pruning reaches it).
  if redis.call('HDEL', ENDS, id) == 1 and listed == 0 then
    redis.call('HINCRBY', META, 'logged', -1)
    listed = 1
  end
  found = found + listed
  -- A task is in one index at most: FRESH (a search) is looked at only when no other
  -- index holds it.
  local n = tonumber(id)
  if found == 0 and head and n and n >= head and n <= tail then
    local at = fresh_position(id)
    if at and not marked[at] then
      marked[at] = true
      positions[#positions + 1] = at
      found = 1
    end
  end
  found = found + redis.call('HDEL', TASKS, id)
  if found > 0 then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
remove_from_fresh(positions)
-- The topic may have no INPUT left.
index_topic()
return out
