-- The reaper: moves up to `limit` tasks whose lease deadline is before `now` out of WORK.
-- ARGV[4] now, ARGV[5] limit, ARGV[6] the error stored on tasks with no retries left (a
-- JSON string).
-- Returns per task {id, queue}: 'c' CANCELLED (a cancel was requested), 'i' INPUT or
-- 'd' DEAD.
local now = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local all_leases = redis.call('HGETALL', LEASES)
local expired, expired_leases = {}, {}
for i = 1, #all_leases, 2 do
  if #expired >= limit then
    break
  end
  local token, deadline = parse_lease(all_leases[i + 1])
  -- A lease that cannot be read is expired: nobody could renew or finish it.
  if not token or tonumber(deadline) < now then
    expired[#expired + 1] = all_leases[i]
    expired_leases[#expired] = all_leases[i + 1]
  end
end
if #expired == 0 then
  return {}
end
local records = bulk('HMGET', TASKS, expired)
local requests, progress = {}, {}
local has_requests = redis.call('EXISTS', CANCELS) == 1
if has_requests then
  requests = bulk('HMGET', CANCELS, expired)
end
local has_progress = redis.call('EXISTS', PROGRESS) == 1
if has_progress then
  progress = bulk('HMGET', PROGRESS, expired)
end
local out = {}
local recovered, failed, cancelled = 0, 0, 0
local requeued = false
for k, id in ipairs(expired) do
  local rec = records[k]
  -- A lease without a task record is a leftover, not a task: just dropped.
  if rec then
    recovered = recovered + 1
    local t = parse_record(rec)
    if t then
      fold_run(t, expired_leases[k], progress[k])
    end
    if requests[k] then
      -- Cancelled while it ran: kept in CANCELLED (whatever the topic's retention, until
      -- pruned), the attempt counted as run. A record that cannot be read is kept as it is.
      if t then
        t.attempt, t.cancelled_by = tonumber(t.attempt) + 1, requests[k]
      end
      finish(id, t, CANCELLED, ARGV[4], true)
      cancelled = cancelled + 1
      out[#out + 1] = {id, 'c'}
    elseif t and tonumber(t.attempt) + 1 <= (tonumber(t.max_retries) or DEFAULT_MAX_RETRIES) then
      t.attempt, t.run_at = tonumber(t.attempt) + 1, ARGV[4]
      redis.call('HSET', TASKS, id, pack_record(t))
      push_input(id, t.priority, ARGV[4], now)
      requeued = true
      out[#out + 1] = {id, 'i'}
    else
      -- No retries left, or a record that cannot be read (kept as it is: corrupt in DEAD).
      if t then
        t.attempt, t.finished_at = tonumber(t.attempt) + 1, ARGV[4]
        push_error(t, t.attempt, ARGV[4], ARGV[6])
        redis.call('HSET', TASKS, id, pack_record(t))
      end
      redis.call('ZADD', DEAD, id, id)
      failed = failed + 1
      out[#out + 1] = {id, 'd'}
    end
  end
end
bulk('HDEL', LEASES, expired)
if has_requests then
  bulk('HDEL', CANCELS, expired)
end
if has_progress then
  bulk('HDEL', PROGRESS, expired)
end
count('recovered', recovered)
count('failed', failed)
count('cancelled', cancelled)
if requeued then
  wake()
end
return out
