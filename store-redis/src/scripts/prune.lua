-- Removes finished tasks (COMPLETED and CANCELLED) of this topic whose finished_at is at
-- or before the cutoff, oldest first. ARGV[4] cutoff (ms), ARGV[5] limit.
-- Returns how many it removed. FINISH_LOG and FINISHED are both in finished_at order: the
-- call takes the older of their heads until it has removed `limit` tasks or neither head
-- is due, so it reads only the entries it removes (and stale ones, of deleted tasks).
local cutoff, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local check_unique = redis.call('EXISTS', UNIQUE) == 1
local removed = 0
while removed < limit do
  local want = limit - removed
  local logged = redis.call('LRANGE', FINISH_LOG, 0, want - 1)
  local set = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', ARGV[4], 'WITHSCORES', 'LIMIT', 0,
    want)
  local ids = {}
  local i, j = 1, 1
  local nl, ns = #logged, #set / 2
  local log_at, log_id
  local function next_logged()
    log_at = nil
    if i <= nl then
      local entry = logged[i]
      local colon = string.find(entry, ':', 1, true)
      if colon then
        log_at, log_id = tonumber(string.sub(entry, 1, colon - 1)), string.sub(entry, colon + 1)
      end
    end
  end
  next_logged()
  while #ids < want do
    local set_at = j <= ns and tonumber(set[2 * j]) or nil
    if log_at and log_at <= cutoff and (not set_at or log_at <= set_at) then
      ids[#ids + 1] = log_id
      i = i + 1
      next_logged()
    elseif set_at then
      ids[#ids + 1] = set[2 * j - 1]
      j = j + 1
    elseif i <= nl and not log_at then
      -- An entry that cannot be read: dropped.
      i = i + 1
      next_logged()
    else
      break
    end
  end
  if i > 1 then
    redis.call('LTRIM', FINISH_LOG, i - 1, -1)
  end
  if j > 1 then
    redis.call('ZREMRANGEBYRANK', FINISHED, 0, j - 2)
  end
  if #ids == 0 then
    break
  end
  -- Only ids still in a finished queue are tasks; the others were deleted.
  -- Most are completed: CANCELLED is asked only about the others.
  -- A completed task filed in an id-ordered FINISH_LOG is in ENDS and not in COMPLETED.
  local completed = bulk('ZMSCORE', COMPLETED, ids)
  local ended_runs = bulk('HMGET', ENDS, ids)
  local live, done, others, ended = {}, {}, {}, {}
  local unlogged = 0
  for k, id in ipairs(ids) do
    if completed[k] or ended_runs[k] then
      done[#done + 1] = id
      live[#live + 1] = id
      if not completed[k] then
        unlogged = unlogged + 1
      end
    else
      others[#others + 1] = id
    end
  end
  if #others > 0 then
    local cancelled = bulk('ZMSCORE', CANCELLED, others)
    for k, id in ipairs(others) do
      if cancelled[k] then
        ended[#ended + 1] = id
        live[#live + 1] = id
      end
    end
  end
  bulk('ZREM', COMPLETED, done)
  if unlogged > 0 then
    redis.call('HINCRBY', META, 'logged', -unlogged)
  end
  bulk('ZREM', CANCELLED, ended)
  if #live > 0 then
    if check_unique then
      local records = bulk('HMGET', TASKS, live)
      for k, id in ipairs(live) do
        free_key(id, (record_unique(records[k])))
      end
    end
    bulk('HDEL', TASKS, live)
    bulk('HDEL', ENDS, done)
  end
  removed = removed + #live
  if #live == #ids then
    -- Nothing stale: a short batch means nothing more is due.
    if #ids < want then
      break
    end
  end
end
return removed
