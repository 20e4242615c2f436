-- Reads one topic's counters, queue sizes and earliest run_at in INPUT, and splits INPUT
-- by time at ARGV[4] (now, ms):
-- {{meta field, value, ...}, input, work, dead, completed, cancelled, not yet due,
-- retrying, earliest run_at (ms, a string) or false when INPUT is empty}.
--
-- The earliest run_at is the least of three lookups, none a scan: FRESH's head (its
-- run_ats never decrease), DUE's first entry (READY's tasks by run_at) and SCHEDULED's.
-- A head whose record cannot be read counts no run_at.
local meta = redis.call('HGETALL', META)
local field = {}
for i = 1, #meta, 2 do
  field[meta[i]] = meta[i + 1]
end

-- The ids of FRESH with their records, BULK at a time (only to bring an old list in line).
local function each_fresh(visit)
  local len = redis.call('LLEN', FRESH)
  for from = 0, len - 1, BULK do
    local ids = redis.call('LRANGE', FRESH, from, from + BULK - 1)
    local records = bulk('HMGET', TASKS, ids)
    for i, id in ipairs(ids) do
      visit(id, records[i])
    end
  end
end

-- Once per topic: a namespace written before DUE existed has READY's tasks missing from
-- it, so they are added (an O(READY) pass, the first time stats read the topic; adding a
-- task that is there already changes nothing). `due_indexed` in META records that it ran.
if field.due_indexed ~= '1' then
  local len = redis.call('ZCARD', READY)
  for from = 0, len - 1, BULK do
    local ids = redis.call('ZRANGE', READY, from, from + BULK - 1)
    local records = bulk('HMGET', TASKS, ids)
    local by_run_at = {}
    for i, id in ipairs(ids) do
      local run_at = record_run_at(records[i])
      if run_at then
        by_run_at[#by_run_at + 1] = run_at
        by_run_at[#by_run_at + 1] = id
      end
    end
    bulk('ZADD', DUE, by_run_at)
  end
  redis.call('HSET', META, 'due_indexed', '1')
end

-- A FRESH list without `fresh_run_at` was written before the field existed. If its
-- run_ats never decrease it gets the field; otherwise its tasks move to READY and DUE,
-- where their claim order (priority, then id) is the same.
if not field.fresh_run_at and redis.call('EXISTS', FRESH) == 1 then
  local last, ordered = nil, true
  each_fresh(function(_, rec)
    local run_at = record_run_at(rec)
    if run_at then
      if last and tonumber(run_at) < tonumber(last) then
        ordered = false
      end
      last = run_at
    end
  end)
  if ordered and last then
    redis.call('HSET', META, 'fresh_run_at', last)
  else
    local band = tonumber(field.fresh_priority) or 0
    each_fresh(function(id, rec)
      redis.call('ZADD', READY, ready_score(band, tonumber(id) or 0), id)
      local run_at = record_run_at(rec)
      if run_at then
        redis.call('ZADD', DUE, run_at, id)
      end
    end)
    redis.call('DEL', FRESH)
  end
end

local earliest = false
local function consider(run_at)
  if run_at and (not earliest or tonumber(run_at) < tonumber(earliest)) then
    earliest = run_at
  end
end
local head = redis.call('LINDEX', FRESH, 0)
if head then
  consider(record_run_at(redis.call('HGET', TASKS, head)))
end
consider(redis.call('ZRANGE', DUE, 0, 0, 'WITHSCORES')[2])
consider(redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')[2])

-- INPUT tasks not yet due at `now`, found from `now` on in each index by run_at, so no due
-- task is visited: SCHEDULED and DUE count a range (ZCOUNT, O(log n)); FRESH, whose run_ats
-- never decrease, is walked back from its tail, only when `fresh_run_at` says a task there
-- is due after `now` (an enqueue at a later `now` than this one's).
local now = ARGV[4]
local after = '(' .. now
local later = redis.call('ZCOUNT', SCHEDULED, after, '+inf') + redis.call('ZCOUNT', DUE, after, '+inf')
local fresh_run_at = redis.call('HGET', META, 'fresh_run_at')
if fresh_run_at and tonumber(fresh_run_at) > tonumber(now) then
  local len, walked, chunk = redis.call('LLEN', FRESH), 0, 16
  local done = false
  while not done and walked < len do
    local ids = redis.call('LRANGE', FRESH, -(walked + chunk), -(walked + 1))
    local records = bulk('HMGET', TASKS, ids)
    for i = #ids, 1, -1 do
      local run_at = record_run_at(records[i])
      if run_at and tonumber(run_at) > tonumber(now) then
        later = later + 1
      else
        done = true
        break
      end
    end
    walked = walked + #ids
    chunk = chunk * 2
  end
end
-- Of those, the ones that ran before (attempt > 0). Only a retry, a recovery or a release
-- puts such a task in INPUT, so a topic that never counted one has none (O(1)); otherwise
-- SCHEDULED's and DUE's entries after `now` are read (O(not yet due)). FRESH holds
-- enqueued tasks only, which never ran.
local retrying = 0
local function ran(rec)
  local attempt = rec and (string.match(rec, '^v2:(%d+):') or string.match(rec, '^(%d+):'))
  return attempt and tonumber(attempt) > 0
end
if later > 0 and ((tonumber(field.retried) or 0) > 0 or (tonumber(field.recovered) or 0) > 0
    or (tonumber(field.released) or 0) > 0) then
  for _, key in ipairs({SCHEDULED, DUE}) do
    local from = 0
    while true do
      local ids = redis.call('ZRANGEBYSCORE', key, after, '+inf', 'LIMIT', from, BULK)
      if #ids == 0 then
        break
      end
      local records = bulk('HMGET', TASKS, ids)
      for i = 1, #ids do
        if ran(records[i]) then
          retrying = retrying + 1
        end
      end
      from = from + #ids
      if #ids < BULK then
        break
      end
    end
  end
end

return {
  meta,
  redis.call('ZCARD', READY) + redis.call('LLEN', FRESH) + redis.call('ZCARD', SCHEDULED),
  redis.call('HLEN', LEASES),
  redis.call('ZCARD', DEAD),
  -- COMPLETED's tasks, and those filed in an id-ordered FINISH_LOG only.
  redis.call('ZCARD', COMPLETED) + math.max(tonumber(field.logged) or 0, 0),
  redis.call('ZCARD', CANCELLED),
  later,
  retrying,
  earliest,
}
