-- The reaper: moves up to `limit` tasks whose lease deadline is before `now` out of WORK.
-- ARGV[4] now, ARGV[5] limit, ARGV[6] the error stored on tasks with no retries left.
-- Returns per task {id, 1 if it went to DEAD else 0}.
local now = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local all_leases = redis.call('HGETALL', LEASES)
local expired = {}
for i = 1, #all_leases, 2 do
  if #expired >= limit then
    break
  end
  local token, deadline = parse_lease(all_leases[i + 1])
  -- A lease that cannot be read is expired: nobody could renew or finish it.
  if not token or tonumber(deadline) < now then
    expired[#expired + 1] = all_leases[i]
  end
end
if #expired == 0 then
  return {}
end
local records = bulk('HMGET', TASKS, expired)
local out = {}
local recovered, failed = 0, 0
local requeued = false
for k, id in ipairs(expired) do
  local rec = records[k]
  -- A lease without a task record is a leftover, not a task: just dropped.
  if rec then
    recovered = recovered + 1
    local t = parse_record(rec)
    if t and tonumber(t.attempt) + 1 <= tonumber(t.max_retries) then
      t.attempt, t.run_at = tonumber(t.attempt) + 1, ARGV[4]
      redis.call('HSET', TASKS, id, pack_record(t))
      push_input(id, t.priority, now, now)
      requeued = true
      out[#out + 1] = {id, 0}
    else
      -- No retries left, or a record that cannot be read (kept as it is: corrupt in DEAD).
      if t then
        t.attempt, t.last_error, t.failed_at = tonumber(t.attempt) + 1, ARGV[6], ARGV[4]
        redis.call('HSET', TASKS, id, pack_record(t))
      end
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
