-- Applies outcomes of runs. ARGV[4] now, ARGV[5] count n, ARGV[6] the kinds as one string
-- of n letters ('c' complete, 'r' retry, 'd' dead, 'l' release), then two blocks of n: ids,
-- tokens; then, for each outcome that is not a completion, in order: retry time, error.
-- Returns the (1-based) positions of stale outcomes: nothing changed, nothing counted.
local now = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
if n == 0 then
  return {}
end
local kinds = ARGV[6]
local i0 = 7
local x = 7 + 2 * n
local leases = bulk_range('HMGET', LEASES, ARGV, i0, i0 + n - 1)
local stale = {}
local finished, completed, others = {}, {}, {}
-- The second of two outcomes for one task in a call is stale: the first ended the lease.
local done = {}
for k = 1, n do
  local id, kind = ARGV[i0 + k - 1], string.sub(kinds, k, k)
  local lease = leases[k]
  local applies = lease and not done[id] and string.match(lease, '^%d+') == ARGV[i0 + n + k - 1]
  if not applies then
    stale[#stale + 1] = k
  else
    done[id] = true
    finished[#finished + 1] = id
  end
  if kind == 'c' then
    if applies then
      completed[#completed + 1] = id
    end
  else
    if applies then
      others[#others + 1] = {id, kind, ARGV[x], ARGV[x + 1]}
    end
    x = x + 2
  end
end
if #finished == 0 then
  return stale
end
bulk('HDEL', LEASES, finished)
if #completed > 0 then
  -- Only a topic that uses unique keys at all needs the records read to free them.
  if redis.call('EXISTS', UNIQUE) == 1 then
    local records = bulk('HMGET', TASKS, completed)
    for i, id in ipairs(completed) do
      free_unique(id, parse_record(records[i]))
    end
  end
  bulk('HDEL', TASKS, completed)
end
local retried, failed, released = 0, 0, 0
for _, o in ipairs(others) do
  local id, kind, at, error = o[1], o[2], o[3], o[4]
  local rec = redis.call('HGET', TASKS, id)
  local t = parse_record(rec)
  if kind == 'r' then
    if t then
      t.attempt, t.run_at, t.last_error = tonumber(t.attempt) + 1, at, error
      redis.call('HSET', TASKS, id, pack_record(t))
    end
    push_input(id, t and t.priority, at, now)
    retried = retried + 1
  elseif kind == 'd' then
    if t then
      t.attempt, t.last_error, t.failed_at = tonumber(t.attempt) + 1, error, ARGV[4]
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
    push_input(id, t and t.priority, now, now)
    released = released + 1
  end
end
count('completed', #completed)
count('retried', retried)
count('failed', failed)
count('released', released)
if retried + released > 0 then
  wake()
end
return stale
