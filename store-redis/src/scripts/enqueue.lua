-- Adds a batch of tasks of one topic to INPUT.
-- ARGV[4] task count n, ARGV[5] ready count r, ARGV[6] scheduled count s, ARGV[7] count u
-- of tasks with a unique key, then four blocks laid out as the commands take them:
--   n pairs id, record;  r pairs ready score, id;  s pairs run_at, id;  u pairs id, key
-- (every block in batch order). Returns {id, existing id, ...} for the tasks not added
-- because their unique key is held (by a stored task or one earlier in the batch).
local n, nr, ns, nu = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(ARGV[7])
local t0 = 8
local r0 = t0 + 2 * n
local s0 = r0 + 2 * nr
local u0 = s0 + 2 * ns

local duplicate = {}
local out = {}
if nu > 0 then
  local keys = {}
  for k = 0, nu - 1 do
    keys[k + 1] = ARGV[u0 + 2 * k + 1]
  end
  local held = bulk('HMGET', UNIQUE, keys)
  local taken, new = {}, {}
  for k = 0, nu - 1 do
    local id, key = ARGV[u0 + 2 * k], keys[k + 1]
    local existing = held[k + 1] or taken[key]
    if existing then
      duplicate[id] = true
      out[#out + 1] = id
      out[#out + 1] = existing
    else
      taken[key] = id
      new[#new + 1] = key
      new[#new + 1] = id
    end
  end
  bulk('HSET', UNIQUE, new)
end

-- `later` mirrors the scheduled set with the id as score, for listing in id order.
local later = {}
if #out == 0 then
  -- The common case: every task is new, and each block goes to its command as it came.
  bulk_range('HSET', TASKS, ARGV, t0, r0 - 1)
  bulk_range('ZADD', READY, ARGV, r0, s0 - 1)
  bulk_range('ZADD', SCHEDULED, ARGV, s0, u0 - 1)
  for i = s0 + 1, u0 - 1, 2 do
    later[#later + 1] = ARGV[i]
    later[#later + 1] = ARGV[i]
  end
else
  local function keep(from, to, id_at)
    local kept = {}
    for i = from, to - 1, 2 do
      if not duplicate[ARGV[i + id_at]] then
        kept[#kept + 1] = ARGV[i]
        kept[#kept + 1] = ARGV[i + 1]
      end
    end
    return kept
  end
  bulk('HSET', TASKS, keep(t0, r0, 0))
  bulk('ZADD', READY, keep(r0, s0, 1))
  local scheduled = keep(s0, u0, 1)
  bulk('ZADD', SCHEDULED, scheduled)
  for i = 2, #scheduled, 2 do
    later[#later + 1] = scheduled[i]
    later[#later + 1] = scheduled[i]
  end
end
bulk('ZADD', LATER, later)
local added = n - #out / 2
count('enqueued', added)
-- Events are built only when someone listens: a watcher costs, nobody listening does not.
-- Published inside the script, a watcher sees the enqueue before any claim sees the task.
if added > 0 and redis.call('PUBSUB', 'NUMSUB', EVENTS)[2] > 0 then
  local events = {}
  for i = t0, r0 - 1, 2 do
    local id = ARGV[i]
    if not duplicate[id] then
      local run_at = string.match(ARGV[i + 1], '^%d+:%d+:%-?%d+:%-?%d+:(%-?%d+):')
      events[#events + 1] = '{"type":"TASK_ENQUEUE","id":' .. id .. ',"topic":' ..
        TOPIC_JSON .. ',"run_at":' .. run_at .. '}'
    end
  end
  redis.call('PUBLISH', EVENTS, '[' .. table.concat(events, ',') .. ']')
end
if added > 0 then
  wake()
end
return out
