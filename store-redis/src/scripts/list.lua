-- A page of one queue of this topic in ascending id order.
-- ARGV[4] queue ('input' | 'work' | 'dead' | 'completed' | 'cancelled'), ARGV[5] list ids
-- above this, ARGV[6] limit, ARGV[7] for INPUT only a part of it at ARGV[8] (now, ms):
-- '' (all of INPUT), 'pending' (due), 'scheduled' or 'retrying' (not yet due, first run
-- or run again), as stats split INPUT.
-- Returns {{ids}, {records}, {leases}, {cancel requests}, {progress}, {ends}} (false for a
-- missing one; leases, requests and progress only for WORK, the ends of the runs (ENDS)
-- only for COMPLETED, empty for the other queues).
local after, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local ids = {}
local function by_number(a, b)
  return tonumber(a) < tonumber(b)
end

-- Whether a record ran before (attempt > 0), as stats.lua reads it.
local function ran(rec)
  local attempt = rec and (string.match(rec, '^v2:(%d+):') or string.match(rec, '^(%d+):'))
  return attempt ~= nil and tonumber(attempt) > 0
end

-- The ids of INPUT not yet due at `now` (ms, a string), the very entries stats.lua counts:
-- SCHEDULED's and DUE's after `now`, and FRESH's tail due after it (only when
-- `fresh_run_at` says there is one).
local function not_yet_due(now)
  local found = {}
  local above = '(' .. now
  for _, key in ipairs({SCHEDULED, DUE}) do
    local from = 0
    while true do
      local page = redis.call('ZRANGEBYSCORE', key, above, '+inf', 'LIMIT', from, BULK)
      for _, id in ipairs(page) do
        found[#found + 1] = id
      end
      from = from + #page
      if #page < BULK then
        break
      end
    end
  end
  local fresh_run_at = redis.call('HGET', META, 'fresh_run_at')
  if fresh_run_at and tonumber(fresh_run_at) > tonumber(now) then
    local len, walked, chunk = redis.call('LLEN', FRESH), 0, 16
    local done = false
    while not done and walked < len do
      local page = redis.call('LRANGE', FRESH, -(walked + chunk), -(walked + 1))
      local records = bulk('HMGET', TASKS, page)
      for i = #page, 1, -1 do
        local run_at = record_run_at(records[i])
        if run_at and tonumber(run_at) > tonumber(now) then
          found[#found + 1] = page[i]
        else
          done = true
          break
        end
      end
      walked = walked + #page
      chunk = chunk * 2
    end
  end
  return found
end
local by_id = {dead = DEAD, completed = COMPLETED, cancelled = CANCELLED}
if by_id[ARGV[4]] then
  -- Scored by id: a page is a range.
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', by_id[ARGV[4]], '(' .. ARGV[5], '+inf',
      'LIMIT', 0, limit)) do
    if tonumber(id) then
      ids[#ids + 1] = id
    end
  end
  if ARGV[4] == 'completed' and log_by_id() then
    -- The rest of COMPLETED is filed in FINISH_LOG, whose ids ascend: its entries above
    -- `after` that have an ENDS entry (the others are CANCELLED or deleted tasks), read in
    -- chunks until `limit` are found or the log ends, merged with the sorted set's page.
    local len = redis.call('LLEN', FINISH_LOG)
    local lo, hi = 0, len
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local entry = redis.call('LINDEX', FINISH_LOG, mid)
      if (tonumber(string.match(entry or '', ':(%d+)$')) or 0) <= after then
        lo = mid + 1
      else
        hi = mid
      end
    end
    -- Chunks of at least 128 entries: a run of CANCELLED or deleted tasks costs one
    -- LRANGE per 128 entries, not one per entry, whatever the page's size.
    local found, step = 0, math.max(limit, 128)
    while lo < len and found < limit do
      local chunk = redis.call('LRANGE', FINISH_LOG, lo, lo + step - 1)
      if #chunk == 0 then
        break
      end
      lo = lo + #chunk
      local candidates = {}
      for _, entry in ipairs(chunk) do
        local id = string.match(entry, ':(%d+)$')
        if id then
          candidates[#candidates + 1] = id
        end
      end
      if #candidates > 0 then
        local present = bulk('HMGET', ENDS, candidates)
        for k, id in ipairs(candidates) do
          if present[k] and found < limit then
            ids[#ids + 1] = id
            found = found + 1
          end
        end
      end
    end
    table.sort(ids, by_number)
  end
elseif ARGV[4] == 'work' then
  -- WORK holds at most the running tasks, so sorting it whole is cheap.
  for _, id in ipairs(redis.call('HKEYS', LEASES)) do
    local n = tonumber(id)
    if n and n > after then
      ids[#ids + 1] = id
    end
  end
  table.sort(ids, by_number)
else
  -- The first `limit` ids of INPUT above `from`, in id order.
  local function input_page(from, limit)
    local ids = {}
    local after = from
    -- INPUT is the scheduled tasks (LATER lists them by id), the fresh ones (FRESH is in id
    -- order) and the ready ones. A ready score is band * 2^37 + id, the band one per
    -- priority, so within a band the order is the id's: a page is the first `limit` above
    -- `after` of each band present, merged.
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', LATER, after + 1, '+inf', 'LIMIT', 0,
        limit)) do
      if tonumber(id) then
        ids[#ids + 1] = id
      end
    end
    local band = 0
    while band < 65536 do
      local next_entry = redis.call('ZRANGEBYSCORE', READY, band * BAND + after + 1, '+inf',
        'WITHSCORES', 'LIMIT', 0, 1)
      if #next_entry == 0 then
        break
      end
      local found = math.floor(tonumber(next_entry[2]) / BAND)
      if found == band then
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', READY, band * BAND + after + 1,
            band * BAND + BAND - 1, 'LIMIT', 0, limit)) do
          if tonumber(id) then
            ids[#ids + 1] = id
          end
        end
        band = band + 1
      else
        -- The next entry is in a later band, maybe with an id at or below `after`: look
        -- again from that band's start.
        band = found
      end
    end
    -- FRESH ascends by id: the first `limit` above `after` follow its lower bound.
    local from, len = fresh_lower_bound(after + 1)
    if from < len then
      for _, id in ipairs(redis.call('LRANGE', FRESH, from, from + limit - 1)) do
        ids[#ids + 1] = id
      end
    end
    table.sort(ids, by_number)
    while #ids > limit do
      table.remove(ids)
    end
    return ids
  end
  local part, now = ARGV[7], ARGV[8]
  if part == 'scheduled' or part == 'retrying' then
    -- Not yet due: the ranges of SCHEDULED and DUE after `now` and FRESH's tail, as stats
    -- count them (O(not yet due), no due task visited), each record read for its attempt.
    local later = not_yet_due(now)
    local records = #later > 0 and bulk('HMGET', TASKS, later) or {}
    for i, id in ipairs(later) do
      local n = tonumber(id)
      if n and n > after and records[i] and ran(records[i]) == (part == 'retrying') then
        ids[#ids + 1] = id
      end
    end
    table.sort(ids, by_number)
  elseif part == 'pending' then
    -- Due: INPUT walked in id order as below, the tasks not yet due skipped.
    local skip = {}
    for _, id in ipairs(not_yet_due(now)) do
      skip[id] = true
    end
    local from = after
    while #ids < limit do
      local page = input_page(from, limit)
      for _, id in ipairs(page) do
        if not skip[id] and #ids < limit then
          ids[#ids + 1] = id
        end
      end
      if #page < limit then
        break
      end
      from = tonumber(page[#page])
    end
  else
    ids = input_page(after, limit)
  end
end
while #ids > limit do
  table.remove(ids)
end
if #ids == 0 then
  return {{}, {}, {}, {}, {}, {}}
end
local leases, requests, progress = {}, {}, {}
if ARGV[4] == 'work' then
  leases = bulk('HMGET', LEASES, ids)
  requests = bulk('HMGET', CANCELS, ids)
  progress = bulk('HMGET', PROGRESS, ids)
end
local ends = {}
if ARGV[4] == 'completed' then
  ends = bulk('HMGET', ENDS, ids)
end
return {ids, bulk('HMGET', TASKS, ids), leases, requests, progress, ends}
