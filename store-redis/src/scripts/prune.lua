-- Removes finished tasks (COMPLETED and CANCELLED) of this topic whose finished_at is at
-- or before the cutoff, oldest first. ARGV[4] cutoff (ms), ARGV[5] limit.
-- Returns how many it removed. FINISHED is in finished_at order, so the call reads only
-- the records it removes.
local ids = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
if #ids == 0 then
  return 0
end
if redis.call('EXISTS', UNIQUE) == 1 then
  local records = bulk('HMGET', TASKS, ids)
  for i, id in ipairs(ids) do
    free_key(id, (record_unique(records[i])))
  end
end
bulk('HDEL', TASKS, ids)
bulk('ZREM', COMPLETED, ids)
bulk('ZREM', CANCELLED, ids)
-- The ids are FINISHED's first entries.
redis.call('ZREMRANGEBYRANK', FINISHED, 0, #ids - 1)
return #ids
