-- Applies outcomes of runs. ARGV[5] now, then 5 per outcome:
--   id, token, kind ('complete' | 'retry' | 'dead' | 'release'), retry time, error
-- Returns per outcome 1 (applied) or 0 (stale: nothing changed, nothing counted).
local now = tonumber(ARGV[5])
local ids = {}
for i = 6, #ARGV, 5 do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  return {}
end
local leases = bulk('HMGET', LEASES, ids)
local out = {}
local retried, failed, released = 0, 0, 0
-- Everything a completion does is gathered and written in a few bulk calls at the end.
local finished, completed, deleted = {}, {}, {}
for k, id in ipairs(ids) do
  local i = 6 + (k - 1) * 5
  local token, attempt, unique = parse_lease(leases[k])
  if token ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    local key = task_key(id)
    local kind = ARGV[i + 2]
    finished[#finished + 1] = id
    if kind == 'complete' then
      if unique == '1' then
        local unique_key = redis.call('HGET', key, 'unique_key')
        if unique_key and redis.call('HGET', UNIQUE, unique_key) == id then
          redis.call('HDEL', UNIQUE, unique_key)
        end
      end
      completed[#completed + 1] = id
      deleted[#deleted + 1] = key
    elseif kind == 'retry' then
      redis.call('HSET', key, 'queue', 'input', 'attempt', attempt, 'run_at', ARGV[i + 3],
        'last_error', ARGV[i + 4])
      push_input(id, key, tonumber(ARGV[i + 3]), now)
      retried = retried + 1
    elseif kind == 'dead' then
      redis.call('HSET', key, 'queue', 'dead', 'attempt', attempt, 'last_error', ARGV[i + 4],
        'failed_at', ARGV[5])
      redis.call('ZADD', DEAD, id, id)
      failed = failed + 1
    else
      -- release: the run did not happen as far as attempts go, so the hash keeps its count.
      redis.call('HSET', key, 'queue', 'input', 'run_at', ARGV[5])
      push_input(id, key, now, now)
      released = released + 1
    end
    out[#out + 1] = 1
  end
end
bulk('HDEL', LEASES, finished)
bulk('ZREM', ALL, completed)
for i = 1, #deleted, BULK do
  redis.call('DEL', unpack(deleted, i, math.min(i + BULK - 1, #deleted)))
end
count('completed', #completed)
count('retried', retried)
count('failed', failed)
count('released', released)
if retried + released > 0 then
  wake()
end
return out
