-- Applies outcomes of runs. ARGV[4] now, ARGV[5] count n, ARGV[6] the outcomes' codes, two
-- characters each: the kind ('c' complete, 'r' retry, 'd' dead, 'l' release) and a digit,
-- the sum of 1 (a finished task is kept), 2 (a result follows) and 4 (a progress value
-- follows). Then two blocks of n: ids, tokens; then each outcome's own arguments, in
-- order: retry time and error (retry) or error (dead), then its result and its progress
-- when its digit says so. Errors come as JSON strings.
-- Returns {stale, cancelled}: the (1-based) positions of stale outcomes (nothing changed,
-- nothing counted) and of those that ended their task CANCELLED (a cancel was requested).
local now = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
if n == 0 then
  return {{}, {}}
end
local codes = ARGV[6]
local i0 = 7
local x = 7 + 2 * n
local leases = bulk_range('HMGET', LEASES, ARGV, i0, i0 + n - 1)
-- Cancel requests and progress exist beside few runs: a topic without any costs one
-- EXISTS each.
local requests, progress = {}, {}
local has_requests = redis.call('EXISTS', CANCELS) == 1
if has_requests then
  requests = bulk_range('HMGET', CANCELS, ARGV, i0, i0 + n - 1)
end
local has_progress = redis.call('EXISTS', PROGRESS) == 1
if has_progress then
  progress = bulk_range('HMGET', PROGRESS, ARGV, i0, i0 + n - 1)
end
local stale, cancelled = {}, {}
local C, R, D = string.byte('c'), string.byte('r'), string.byte('d')
-- ended: every task whose lease the call ends; dropped: completions not kept (removed in
-- bulk, as cheap as a completion was before history); kept: completions kept, as parallel
-- arrays of ids, leases, results and progress values (no table per task: most calls are
-- nothing but completions, and a table each cost more than the rest of the Lua work);
-- others: the rest, one task at a time.
local ended, dropped, others = {}, {}, {}
local kept, kept_leases, kept_results, kept_values = {}, {}, {}, {}
-- The second of two outcomes for one task in a call is stale: the first ended the lease.
local done = {}
for k = 1, n do
  local id = ARGV[i0 + k - 1]
  local kind, flags = string.byte(codes, 2 * k - 1, 2 * k)
  flags = flags - 48
  local at, error, result, value
  if kind == R then
    at, error, x = ARGV[x], ARGV[x + 1], x + 2
  elseif kind == D then
    error, x = ARGV[x], x + 1
  end
  if flags % 4 >= 2 then
    result, x = ARGV[x], x + 1
  end
  if flags >= 4 then
    value, x = ARGV[x], x + 1
  end
  local lease = leases[k]
  local applies = lease and not done[id] and string.match(lease, '^%d+') == ARGV[i0 + n + k - 1]
  if not applies then
    stale[#stale + 1] = k
  else
    done[id] = true
    ended[#ended + 1] = id
    local keep = flags % 2 == 1
    if kind == C and not requests[k] then
      if keep then
        -- The outcome's progress is the newest; else the one stored while the task ran.
        local c = #kept + 1
        kept[c], kept_leases[c], kept_results[c], kept_values[c] =
          id, lease, result or false, value or progress[k] or false
      else
        dropped[#dropped + 1] = id
      end
    else
      value = value or progress[k]
      if requests[k] then
        cancelled[#cancelled + 1] = k
        if kind ~= C then
          result = nil
        end
        others[#others + 1] = {id, 'x', nil, nil, lease, value, keep, result, requests[k]}
      else
        others[#others + 1] = {id, string.char(kind), at, error, lease, value}
      end
    end
  end
end
if #ended == 0 then
  return {stale, cancelled}
end
bulk('HDEL', LEASES, ended)
if has_requests then
  bulk('HDEL', CANCELS, ended)
end
if has_progress then
  bulk('HDEL', PROGRESS, ended)
end
local check_unique = redis.call('EXISTS', UNIQUE) == 1
if #dropped > 0 then
  -- Only a topic that uses unique keys at all needs the records read to free them.
  if check_unique then
    local records = bulk('HMGET', TASKS, dropped)
    for i, id in ipairs(dropped) do
      free_key(id, (record_unique(records[i])))
    end
  end
  bulk('HDEL', TASKS, dropped)
end
if #kept > 0 then
  -- How each run ended goes to ENDS, beside the record (see RS in common.lua): taking
  -- the record apart and packing it again would cost several times more, and even
  -- appending to it reads and writes it whole. A record that is missing or cannot be read
  -- stays so: the task shows in COMPLETED as corrupt.
  local ends = {}
  -- Every end starts with the call's time; most have neither result nor progress.
  local head = ARGV[4] .. ':'
  for i, id in ipairs(kept) do
    local run = string.match(kept_leases[i], '^%d+:%-?%d+;(%-?%d+;%d+):') or ';'
    local result, value = kept_results[i], kept_values[i]
    ends[2 * i - 1] = id
    if result or value then
      ends[2 * i] = head .. run .. ':' .. opt_len(result or nil) .. ':' ..
        opt_len(value or nil) .. ':' .. (result or '') .. (value or '')
    else
      ends[2 * i] = head .. run .. ':::'
    end
  end
  if check_unique then
    local records = bulk('HMGET', TASKS, kept)
    for i, id in ipairs(kept) do
      local key, held = record_unique(records[i])
      if not held then
        free_key(id, key)
      end
    end
  end
  bulk('HSET', ENDS, ends)
  -- Listed by id in FINISH_LOG when it is in id order (almost always: tasks finish about
  -- in id order), else in COMPLETED too.
  file_finished(kept, ARGV[4], true)
end
local retried, failed, released, ncancelled = 0, 0, 0, 0
for _, o in ipairs(others) do
  local id, kind, at, error, lease, value = o[1], o[2], o[3], o[4], o[5], o[6]
  local t = parse_record(redis.call('HGET', TASKS, id))
  if t then
    fold_run(t, lease, value)
  end
  if kind == 'x' then
    -- A cancel was requested: CANCELLED whatever the outcome, the attempt counted as run.
    if t then
      t.attempt, t.cancelled_by = tonumber(t.attempt) + 1, o[9]
      if o[8] then
        t.result = o[8]
      end
    end
    finish(id, t, CANCELLED, ARGV[4], o[7])
    ncancelled = ncancelled + 1
  elseif kind == 'r' then
    if t then
      t.attempt, t.run_at = tonumber(t.attempt) + 1, at
      push_error(t, t.attempt, ARGV[4], error)
      redis.call('HSET', TASKS, id, pack_record(t))
    end
    push_input(id, t and t.priority, at, now)
    retried = retried + 1
  elseif kind == 'd' then
    if t then
      t.attempt, t.finished_at = tonumber(t.attempt) + 1, ARGV[4]
      push_error(t, t.attempt, ARGV[4], error)
      redis.call('HSET', TASKS, id, pack_record(t))
    end
    -- A record that cannot be read goes to DEAD as it is: it shows there as corrupt.
    redis.call('ZADD', DEAD, id, id)
    failed = failed + 1
  else
    -- release: the run did not happen as far as attempts go, so the attempt stays.
    if t then
      t.run_at = ARGV[4]
      redis.call('HSET', TASKS, id, pack_record(t))
    end
    push_input(id, t and t.priority, ARGV[4], now)
    released = released + 1
  end
end
count('completed', #dropped + #kept)
count('retried', retried)
count('failed', failed)
count('released', released)
count('cancelled', ncancelled)
if retried + released > 0 then
  wake()
end
return {stale, cancelled}
