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
local len = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local rec = redis.call('HGET', TASKS, id)
  free_unique(id, parse_record(rec))
  -- Dropping the lease makes the running claim's outcome stale. An index entry without a
  -- record (corrupt data) is a task all the same, so that it can be deleted.
  local found = redis.call('HDEL', LEASES, id) + redis.call('ZREM', READY, id)
    + redis.call('ZREM', SCHEDULED, id) + redis.call('ZREM', DEAD, id)
  redis.call('ZREM', LATER, id)
  -- A task is in one index at most: FRESH (a search) is looked at only when no other
  -- index holds it.
  local n = tonumber(id)
  if found == 0 and head and n and n >= head and n <= tail then
    local at
    at, len = fresh_lower_bound(n)
    if at < len and not marked[at] and tonumber(redis.call('LINDEX', FRESH, at)) == n then
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
if #positions > 0 then
  -- Each found id is overwritten by a marker no id can equal, then the markers are removed
  -- in one pass from the nearer end (LREM stops after the count it is given).
  local low, high = len, -1
  for _, at in ipairs(positions) do
    redis.call('LSET', FRESH, at, '-')
    low, high = math.min(low, at), math.max(high, at)
  end
  if high < len - 1 - low then
    redis.call('LREM', FRESH, #positions, '-')
  else
    redis.call('LREM', FRESH, -#positions, '-')
  end
end
return out
