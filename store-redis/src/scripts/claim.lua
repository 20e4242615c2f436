-- Moves up to `limit` due tasks of one topic from INPUT to WORK under new leases.
-- ARGV[5] now, ARGV[6] limit, ARGV[7] max_running ('' for none), ARGV[8] owner,
-- ARGV[9] lease deadline, ARGV[10] most scheduled tasks to promote in this call.
-- Returns per task {id, token, {values of RECORD_FIELDS}}: the hash, which a claim does
-- not change (the lease lives in LEASES); the caller applies the claim to it.
if redis.call('HGET', META, 'paused') == '1' then
  return {}
end
local limit = tonumber(ARGV[6])
if ARGV[7] ~= '' then
  local room = tonumber(ARGV[7]) - redis.call('HLEN', LEASES)
  if room < limit then
    limit = room
  end
end
if limit <= 0 then
  return {}
end
local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[10]))
if #due > 0 then
  local promoted = {}
  for _, id in ipairs(due) do
    local priority = tonumber(redis.call('HGET', task_key(id), 'priority')) or 0
    promoted[#promoted + 1] = ready_score(priority, tonumber(id) or 0)
    promoted[#promoted + 1] = id
  end
  bulk('ZADD', READY, promoted)
  bulk('ZREM', SCHEDULED, due)
end
local popped = redis.call('ZPOPMIN', READY, limit)
local ids = {}
for i = 1, #popped, 2 do
  -- A member that is not an id names no task a lease could refer to: dropped.
  if tonumber(popped[i]) then
    ids[#ids + 1] = popped[i]
  end
end
if #ids == 0 then
  return {}
end
-- One counter step hands out this claim's fencing tokens: last - #ids + 1 .. last.
local last = redis.call('HINCRBY', META, 'token', #ids)
local out, leases = {}, {}
for i, id in ipairs(ids) do
  local token = last - #ids + i
  -- A key that is not a hash is no task; it must not abort the claim of the others (a
  -- script error keeps the writes made before it), so it is dropped.
  local entry = redis.pcall('HMGET', task_key(id), unpack(RECORD_FIELDS))
  if entry.err == nil then
    -- A garbage attempt does not stop the claim: the task goes to WORK all the same and
    -- the caller, failing to decode it, sends it to DEAD under this lease.
    local attempt = tonumber(entry[3]) or 0
    local unique = entry[9] and '1' or '0'
    leases[#leases + 1] = id
    leases[#leases + 1] = lease_value(token, attempt + 1, unique, ARGV[9], ARGV[8])
    out[#out + 1] = {id, token, entry}
  end
end
bulk('HSET', LEASES, leases)
count('started', #out)
return out
