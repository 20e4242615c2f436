-- The reaper: moves up to `limit` tasks whose lease deadline is before `now` out of WORK.
-- ARGV[5] now, ARGV[6] limit, ARGV[7] the error stored on tasks with no retries left.
-- Returns per task {id, 1 if it went to DEAD else 0}.
local now = tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local all_leases = redis.call('HGETALL', LEASES)
local expired, attempts = {}, {}
for i = 1, #all_leases, 2 do
  if #expired >= limit then
    break
  end
  local token, attempt, _, deadline = parse_lease(all_leases[i + 1])
  -- A lease that cannot be read is expired: nobody could renew or finish it.
  if not token or tonumber(deadline) < now then
    expired[#expired + 1] = all_leases[i]
    attempts[#attempts + 1] = attempt or 1
  end
end
if #expired == 0 then
  return {}
end
local out = {}
local recovered, failed = 0, 0
local requeued = false
for k, id in ipairs(expired) do
  local key = task_key(id)
  -- A lease without a task hash is a leftover, not a task: just dropped.
  if redis.call('EXISTS', key) == 1 then
    recovered = recovered + 1
    local attempt = attempts[k]
    local max_retries = tonumber(redis.call('HGET', key, 'max_retries'))
    if max_retries and attempt <= max_retries then
      redis.call('HSET', key, 'queue', 'input', 'attempt', attempt, 'run_at', ARGV[5])
      push_input(id, key, now, now)
      requeued = true
      out[#out + 1] = {id, 0}
    else
      redis.call('HSET', key, 'queue', 'dead', 'attempt', attempt, 'last_error', ARGV[7],
        'failed_at', ARGV[5])
      redis.call('ZADD', DEAD, id, id)
      failed = failed + 1
      out[#out + 1] = {id, 1}
    end
  end
end
bulk('HDEL', LEASES, expired)
count('recovered', recovered)
count('failed', failed)
if requeued then
  wake()
end
return out
