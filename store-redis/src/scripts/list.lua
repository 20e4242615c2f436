-- A page of one queue of this topic in ascending id order.
-- ARGV[4] queue ('input' | 'work' | 'dead' | 'completed' | 'cancelled'), ARGV[5] list ids
-- above this, ARGV[6] limit.
-- Returns {{ids}, {records}, {leases}, {cancel requests}, {progress}, {ends}} (false for a
-- missing one; leases, requests and progress only for WORK, the ends of the runs (ENDS)
-- only for COMPLETED, empty for the other queues).
local after, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local ids = {}
local function by_number(a, b)
  return tonumber(a) < tonumber(b)
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
