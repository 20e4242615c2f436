-- Applies outcomes of runs. ARGV[5] now, then 5 per outcome:
--   id, token, kind ('complete' | 'retry' | 'dead' | 'release'), retry time, error
-- Returns per outcome 1 (applied) or 0 (stale: nothing changed, nothing counted).
local now = tonumber(ARGV[5])
local out = {}
local retried, failed, released = 0, 0, 0
-- Index removals are gathered and written with one ZREM per set at the end.
local left_work, completed = {}, {}
for i = 6, #ARGV, 5 do
  local id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = task_key(id)
  local cur = redis.call('HMGET', key, 'queue', 'token', 'attempt', 'unique_key')
  if cur[1] ~= 'work' or cur[2] ~= token then
    out[#out + 1] = 0
  else
    left_work[#left_work + 1] = id
    if kind == 'complete' then
      if cur[4] and redis.call('HGET', UNIQUE, cur[4]) == id then
        redis.call('HDEL', UNIQUE, cur[4])
      end
      redis.call('DEL', key)
      completed[#completed + 1] = id
    else
      redis.call('HDEL', key, 'owner', 'token', 'deadline')
      if kind == 'retry' then
        redis.call('HSET', key, 'queue', 'input', 'run_at', ARGV[i + 3], 'last_error', ARGV[i + 4])
        push_input(id, key, tonumber(ARGV[i + 3]), now)
        retried = retried + 1
      elseif kind == 'dead' then
        redis.call('HSET', key, 'queue', 'dead', 'last_error', ARGV[i + 4], 'failed_at', ARGV[5])
        redis.call('ZADD', DEAD, id, id)
        failed = failed + 1
      else
        -- release: the run did not happen as far as attempts go.
        local attempt = (tonumber(cur[3]) or 1) - 1
        if attempt < 0 then
          attempt = 0
        end
        redis.call('HSET', key, 'queue', 'input', 'run_at', ARGV[5], 'attempt', attempt)
        push_input(id, key, now, now)
        released = released + 1
      end
    end
    out[#out + 1] = 1
  end
end
zrem_all(WORK, left_work)
zrem_all(ALL, completed)
count('completed', #completed)
count('retried', retried)
count('failed', failed)
count('released', released)
if retried + released > 0 then
  wake()
end
return out
