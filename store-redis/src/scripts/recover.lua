-- The reaper: moves up to `limit` tasks whose lease deadline is before `now` out of WORK.
-- ARGV[5] now, ARGV[6] limit, ARGV[7] the error stored on tasks with no retries left.
-- Returns per task {id, 1 if it went to DEAD else 0}.
local now = tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', WORK, '-inf', '(' .. ARGV[5], 'LIMIT', 0, tonumber(ARGV[6]))
local out = {}
local recovered, failed = 0, 0
local requeued = false
for _, id in ipairs(expired) do
  redis.call('ZREM', WORK, id)
  local key = task_key(id)
  if redis.call('EXISTS', key) == 1 then
    local cur = redis.call('HMGET', key, 'attempt', 'max_retries')
    redis.call('HDEL', key, 'owner', 'token', 'deadline')
    recovered = recovered + 1
    local attempt, max_retries = tonumber(cur[1]), tonumber(cur[2])
    if attempt and max_retries and attempt <= max_retries then
      redis.call('HSET', key, 'queue', 'input', 'run_at', ARGV[5])
      push_input(id, key, now, now)
      requeued = true
      out[#out + 1] = {id, 0}
    else
      redis.call('HSET', key, 'queue', 'dead', 'last_error', ARGV[7], 'failed_at', ARGV[5])
      redis.call('ZADD', DEAD, id, id)
      failed = failed + 1
      out[#out + 1] = {id, 1}
    end
  end
end
count('recovered', recovered)
count('failed', failed)
if requeued then
  wake()
end
return out
