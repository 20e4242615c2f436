-- Adds a batch of tasks of one topic to INPUT.
-- ARGV[5] now (ms), ARGV[6] task count, then 9 per task:
--   id, run_at, priority, max_retries, has_unique ('1'/'0'), unique_key,
--   has_external_id ('1'/'0'), external_id, args (JSON text)
-- Returns per task {1, id} when added or {0, existing id} for a duplicate unique key.
local now = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
-- Events are built only when someone listens: a watcher costs, nobody listening does not.
local listening = redis.call('PUBSUB', 'NUMSUB', EVENTS)[2] > 0
local out, events = {}, {}
-- Index entries are gathered and written with one ZADD per set at the end.
local ready, scheduled, all = {}, {}, {}
for i = 0, n - 1 do
  local b = 7 + i * 9
  local id, run_at_s, priority_s = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local has_unique, unique_key = ARGV[b + 4] == '1', ARGV[b + 5]
  local existing = false
  if has_unique then
    existing = redis.call('HGET', UNIQUE, unique_key)
  end
  if existing then
    out[#out + 1] = {0, existing}
  else
    local fields = {'queue', 'input', 'args', ARGV[b + 8], 'attempt', '0',
      'max_retries', ARGV[b + 3], 'priority', priority_s, 'enqueued_at', ARGV[5],
      'run_at', run_at_s}
    if has_unique then
      redis.call('HSET', UNIQUE, unique_key, id)
      fields[#fields + 1] = 'unique_key'
      fields[#fields + 1] = unique_key
    end
    if ARGV[b + 6] == '1' then
      fields[#fields + 1] = 'external_id'
      fields[#fields + 1] = ARGV[b + 7]
    end
    redis.call('HSET', task_key(id), unpack(fields))
    if tonumber(run_at_s) <= now then
      ready[#ready + 1] = ready_score(tonumber(priority_s), tonumber(id))
      ready[#ready + 1] = id
    else
      scheduled[#scheduled + 1] = run_at_s
      scheduled[#scheduled + 1] = id
    end
    all[#all + 1] = id
    all[#all + 1] = id
    out[#out + 1] = {1, id}
    if listening then
      events[#events + 1] = '{"type":"TASK_ENQUEUE","id":' .. id .. ',"topic":' ..
        TOPIC_JSON .. ',"run_at":' .. run_at_s .. '}'
    end
  end
end
bulk('ZADD', READY, ready)
bulk('ZADD', SCHEDULED, scheduled)
bulk('ZADD', ALL, all)
count('enqueued', #all / 2)
-- Published inside the script: a watcher sees the enqueue before any claim can see the task.
if #events > 0 then
  redis.call('PUBLISH', EVENTS, '[' .. table.concat(events, ',') .. ']')
end
if #all > 0 then
  wake()
end
return out
