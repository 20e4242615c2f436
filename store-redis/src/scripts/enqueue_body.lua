-- The body of every enqueue, shared by enqueue.lua, enqueue_many.lua and fire.lua
-- (scripts.rs puts it after common.lua): `enqueue_tasks(base, A)` adds a batch of tasks of
-- one topic to INPUT, its arguments in A (ARGV unless given) from `base` on:
-- ARGV[base] task count n, ARGV[base + 1] count f of due tasks that may go to FRESH,
-- ARGV[base + 2] their priority, ARGV[base + 3] count r of the other due tasks,
-- ARGV[base + 4] scheduled count s, ARGV[base + 5] count u of tasks with a unique key,
-- ARGV[base + 6] and ARGV[base + 7] the first and the last run_at of the f tasks (which
-- never decrease along them; empty when f is 0), ARGV[base + 8] count k of tasks a
-- schedule fired, then seven blocks laid out as the commands take them:
--   n pairs id, record;  f ids (ascending);  r pairs ready score, id;  r pairs run_at, id
--   (the same tasks, for DUE);  s pairs run_at, id;  u pairs id, key;
--   k pairs id, tick (the JSON of the event's `tick`, {"schedule":…,"tick":…})
-- (every block in batch order). Returns {id, existing id, ...} for the tasks not added
-- because their unique key is held (by a stored task or one earlier in the batch).
local function enqueue_tasks(base, A)
  -- The arguments: ARGV, or a table laid out as ARGV would be (enqueue_many's short form).
  A = A or ARGV
  local n, nf, nr, ns, nu, nk = tonumber(A[base]), tonumber(A[base + 1]),
    tonumber(A[base + 3]), tonumber(A[base + 4]), tonumber(A[base + 5]),
    tonumber(A[base + 8])
  local priority, first_run_at, last_run_at = A[base + 2], A[base + 6], A[base + 7]
  local t0 = base + 9
  local f0 = t0 + 2 * n
  local r0 = f0 + nf
  local d0 = r0 + 2 * nr
  local s0 = d0 + 2 * nr
  local u0 = s0 + 2 * ns
  local k0 = u0 + 2 * nu

  -- The run_at of each task of the batch, by id, read from the records (only when due
  -- tasks meant for FRESH go to READY instead).
  local function batch_run_ats()
    local run_at = {}
    for i = t0, f0 - 1, 2 do
      run_at[A[i]] = record_run_at(A[i + 1])
    end
    return run_at
  end

  -- Appends the due tasks t[from..to] (ids ascending, all of `priority`, run_ats from
  -- first_run_at to last_run_at, never decreasing) to FRESH when that keeps it of one
  -- priority, strictly ascending in id and never decreasing in run_at: the list is empty, or
  -- holds `priority`, ends below t[from] and has no run_at after first_run_at. Otherwise they
  -- go to READY and DUE: another priority than the list's, an enqueuer that reserved its ids
  -- before the list's last one but arrived later, one whose clock is behind the list's last
  -- enqueuer, or a list written before `fresh_run_at` existed. (Ids are reserved in
  -- disjoint ranges, one per batch, so a chunk is wholly above or wholly below the tail of
  -- another batch; one that is not, never written by this store, still goes to READY whole,
  -- which costs speed, not order.) `fresh_run_at` becomes last_run_at: at least the largest
  -- run_at listed (duplicates dropped from t may have had it), which keeps the order safe,
  -- and `fresh_tail` the last id appended.
  -- With `counted` (the number of tasks the call adds, when it is known before: no
  -- duplicates), the `enqueued` counter moves in the same HMGET and HSET of META as the
  -- list's fields when the tasks follow the list (one command less per topic, which is most
  -- of the cost of a batch spread over many topics); returns whether it did.
  local function add_fresh(t, from, to, counted)
    if from > to then
      return false
    end
    -- `fresh_tail` is the last id appended: at least the list's tail while the list is not
    -- empty (claims, cancels and deletes only remove ids), so a batch above it, of the
    -- list's priority and not due before `fresh_run_at`, may follow without reading the
    -- list. (An empty list takes any batch, so stale fields only send one elsewhere.)
    local fields = redis.call('HMGET', META, 'fresh_priority', 'fresh_run_at', 'fresh_tail',
      'enqueued')
    local listed, listed_run_at, listed_tail = fields[1], fields[2], fields[3]
    local append = listed_tail and listed == priority and listed_run_at and
      tonumber(t[from]) > (tonumber(listed_tail) or math.huge) and
      tonumber(first_run_at) >= tonumber(listed_run_at)
    local done = false
    if append and counted then
      -- Counters stay far below 2^53, so the sum is exact and '%d' writes it whole.
      local enqueued = string.format('%d', (tonumber(fields[4]) or 0) + counted)
      redis.call('HSET', META, 'fresh_run_at', last_run_at, 'fresh_tail', t[to], 'enqueued',
        enqueued)
      done = true
    elseif append then
      redis.call('HSET', META, 'fresh_run_at', last_run_at, 'fresh_tail', t[to])
    else
      local tail = redis.call('LINDEX', FRESH, -1)
      if not tail then
        redis.call('HSET', META, 'fresh_priority', priority, 'fresh_run_at', last_run_at,
          'fresh_tail', t[to])
        append = true
      else
        local last = tonumber(tail)
        append = listed == priority and last ~= nil and tonumber(t[from]) > last and
          listed_run_at and tonumber(first_run_at) >= tonumber(listed_run_at)
        if append then
          redis.call('HSET', META, 'fresh_run_at', last_run_at, 'fresh_tail', t[to])
        end
      end
    end
    if append then
      bulk_range('RPUSH', FRESH, t, from, to)
    else
      if not READY then
        -- enqueue_many's short form named only FRESH's keys (see use_topic).
        use_topic(TAG, TOPIC_JSON, false)
      end
      local band = tonumber(priority)
      local run_at = batch_run_ats()
      local scored, due = {}, {}
      for i = from, to do
        scored[#scored + 1] = ready_score(band, tonumber(t[i]))
        scored[#scored + 1] = t[i]
        due[#due + 1] = run_at[t[i]] or first_run_at
        due[#due + 1] = t[i]
      end
      bulk('ZADD', READY, scored)
      bulk('ZADD', DUE, due)
    end
    return done
  end

  local duplicate = {}
  local out = {}
  -- Whether add_fresh moved the `enqueued` counter already.
  local counted = false
  if nu > 0 then
    local keys = {}
    for k = 0, nu - 1 do
      keys[k + 1] = A[u0 + 2 * k + 1]
    end
    local held = bulk('HMGET', UNIQUE, keys)
    local taken, new = {}, {}
    for k = 0, nu - 1 do
      local id, key = A[u0 + 2 * k], keys[k + 1]
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
    bulk_range('HSET', TASKS, A, t0, f0 - 1)
    counted = add_fresh(A, f0, r0 - 1, n)
    bulk_range('ZADD', READY, A, r0, d0 - 1)
    bulk_range('ZADD', DUE, A, d0, s0 - 1)
    bulk_range('ZADD', SCHEDULED, A, s0, u0 - 1)
    for i = s0 + 1, u0 - 1, 2 do
      later[#later + 1] = A[i]
      later[#later + 1] = A[i]
    end
  else
    local function keep(from, to, id_at)
      local kept = {}
      for i = from, to - 1, 2 do
        if not duplicate[A[i + id_at]] then
          kept[#kept + 1] = A[i]
          kept[#kept + 1] = A[i + 1]
        end
      end
      return kept
    end
    bulk('HSET', TASKS, keep(t0, f0, 0))
    local fresh = {}
    for i = f0, r0 - 1 do
      if not duplicate[A[i]] then
        fresh[#fresh + 1] = A[i]
      end
    end
    add_fresh(fresh, 1, #fresh)
    bulk('ZADD', READY, keep(r0, d0, 1))
    bulk('ZADD', DUE, keep(d0, s0, 1))
    local scheduled = keep(s0, u0, 1)
    bulk('ZADD', SCHEDULED, scheduled)
    for i = 2, #scheduled, 2 do
      later[#later + 1] = scheduled[i]
      later[#later + 1] = scheduled[i]
    end
  end
  bulk('ZADD', LATER, later)
  local added = n - #out / 2
  if not counted then
    count('enqueued', added)
  end
  -- Events are built only when someone listens: a watcher costs, nobody listening does not.
  -- Published inside the script, a watcher sees the enqueue before any claim sees the task.
  if added > 0 then
    -- The earliest run_at of the batch goes to WAITING (that of a duplicate too, which
    -- only makes the score lower than it need be: see common.lua).
    local earliest = nil
    if nf > 0 then
      earliest = tonumber(first_run_at)
    end
    for i = d0, u0 - 1, 2 do
      local at = tonumber(A[i])
      if at and (not earliest or at < earliest) then
        earliest = at
      end
    end
    -- A Lua number handed to redis.call is exact (see common.lua).
    if earliest then
      note_input(earliest)
    end
  end
  if added > 0 and listening() then
    local ticks = {}
    for i = k0, k0 + 2 * nk - 1, 2 do
      ticks[A[i]] = A[i + 1]
    end
    local events = {}
    for i = t0, f0 - 1, 2 do
      local id = A[i]
      if not duplicate[id] then
        local run_at = string.match(A[i + 1], '^v2:%d+:%d*:%-?%d+:%-?%d+:(%-?%d+):')
        local tick = ''
        if ticks[id] then
          tick = ',"tick":' .. ticks[id]
        end
        events[#events + 1] = '{"type":"TASK_ENQUEUE","id":' .. id .. ',"topic":' ..
          TOPIC_JSON .. ',"run_at":' .. run_at .. tick .. '}'
      end
    end
    redis.call('PUBLISH', EVENTS, '[' .. table.concat(events, ',') .. ']')
  end
  if added > 0 then
    wake()
  end
  return out
end
