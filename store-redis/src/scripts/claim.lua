-- Moves up to `limit` due tasks of one topic from INPUT to WORK under new leases.
-- ARGV[5] now, ARGV[6] limit, ARGV[7] max_running ('' for none), ARGV[8] owner,
-- ARGV[9] lease deadline, ARGV[10] most scheduled tasks to promote in this call.
-- Returns per task {id, token, field, value, field, value, ...} (the hash after the claim).
if redis.call('HGET', META, 'paused') == '1' then
  return {}
end
local limit = tonumber(ARGV[6])
if ARGV[7] ~= '' then
  local room = tonumber(ARGV[7]) - redis.call('ZCARD', WORK)
  if room < limit then
    limit = room
  end
end
if limit <= 0 then
  return {}
end
local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[10]))
for _, id in ipairs(due) do
  local priority = tonumber(redis.call('HGET', task_key(id), 'priority')) or 0
  redis.call('ZADD', READY, ready_score(priority, tonumber(id) or 0), id)
  redis.call('ZREM', SCHEDULED, id)
end
local popped = redis.call('ZPOPMIN', READY, limit)
local out = {}
local started = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  -- A member that is not an id names no task a lease could refer to: dropped.
  if tonumber(id) then
    local key = task_key(id)
    local token = redis.call('HINCRBY', META, 'token', 1)
    -- A garbage attempt must not stop the claim: the record goes to WORK all the same and
    -- the caller, failing to decode it, sends it to DEAD under this lease.
    local attempt = (tonumber(redis.call('HGET', key, 'attempt')) or 0) + 1
    redis.call('HSET', key, 'queue', 'work', 'attempt', attempt, 'owner', ARGV[8],
      'token', token, 'deadline', ARGV[9])
    redis.call('ZADD', WORK, ARGV[9], id)
    started = started + 1
    local entry = redis.call('HGETALL', key)
    table.insert(entry, 1, token)
    table.insert(entry, 1, id)
    out[#out + 1] = entry
  end
end
count('started', started)
return out
