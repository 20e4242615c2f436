-- The claim of one topic, shared by claim.lua (one topic per call) and claim_many.lua
-- (several topics in one call, standalone Redis only); scripts.rs puts it after common.lua.
--
-- claim_topic(now, limit, max_running, owner, deadline, promote, retries) moves up to
-- `limit` due tasks of the current topic from INPUT to WORK under new leases: `now` the
-- time (a string), `max_running` the most tasks of the topic in WORK ('' for none),
-- `owner` and `deadline` (a string) those of the leases, `promote` the most scheduled tasks
-- to promote, `retries` the retry limit of claimed tasks that set none.
-- Returns {last token, {ids}, {records}}: the i-th of n tasks got token last - n + i, or {}
-- when the topic gave nothing. A record is as stored (false when missing): a claim does
-- not change it. The start time and the retry limit go into the lease (see parse_lease),
-- and the caller applies the claim to the records it returns.
--
-- The topic's entry in WAITING is corrected whenever the claim shows it wrong: removed
-- for a paused topic, and set from the queues (index_topic) when the topic gave fewer
-- tasks than it was asked for and allowed to give (it may have run dry). A topic held back
-- only by max_running keeps its entry: it still has due work.
local function claim_topic(now, limit, max_running, owner, deadline, promote, retries)
  if redis.call('HGET', META, 'paused') == '1' then
    index_topic(true)
    return {}
  end
  limit = tonumber(limit)
  if max_running ~= '' then
    local room = tonumber(max_running) - redis.call('HLEN', LEASES)
    if room < limit then
      limit = room
    end
  end
  if limit <= 0 then
    return {}
  end
  promote = tonumber(promote)

  local function take()
    -- Scheduled tasks now due move to READY, and to DUE with the run_at they had in
    -- SCHEDULED. They are SCHEDULED's first entries, so they leave it by rank.
    local scheduled = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', now, 'WITHSCORES',
      'LIMIT', 0, promote)
    if #scheduled > 0 then
      local due, by_run_at = {}, {}
      for i = 1, #scheduled, 2 do
        due[#due + 1] = scheduled[i]
        by_run_at[i] = scheduled[i + 1]
        by_run_at[i + 1] = scheduled[i]
      end
      local records = bulk('HMGET', TASKS, due)
      local promoted = {}
      for i, id in ipairs(due) do
        promoted[#promoted + 1] = ready_score(record_priority(records[i]), tonumber(id) or 0)
        promoted[#promoted + 1] = id
      end
      bulk('ZADD', READY, promoted)
      bulk('ZADD', DUE, by_run_at)
      redis.call('ZREMRANGEBYRANK', SCHEDULED, 0, #due - 1)
      bulk('ZREM', LATER, due)
    end
    -- Due tasks are in FRESH (ids of one priority, ascending) and in READY (by score): the
    -- claim takes the first `limit` of both merged by score, reading at most `limit` of each.
    local ids
    local fresh = redis.call('LRANGE', FRESH, 0, limit - 1)
    if #fresh == 0 then
      ids = redis.call('ZRANGE', READY, 0, limit - 1)
      if #ids == 0 then
        return ids
      end
      redis.call('ZREMRANGEBYRANK', READY, 0, #ids - 1)
      bulk('ZREM', DUE, ids)
    else
      local base = ready_score(tonumber(redis.call('HGET', META, 'fresh_priority')) or 0, 0)
      local ready
      if #fresh < limit then
        ready = redis.call('ZRANGE', READY, 0, limit - 1, 'WITHSCORES')
      else
        -- Only ready tasks before the last fresh one taken can be among the first `limit`.
        ready = redis.call('ZRANGEBYSCORE', READY, '-inf', base + (tonumber(fresh[#fresh]) or 0),
          'WITHSCORES', 'LIMIT', 0, limit)
      end
      local taken_fresh, taken_ready = #fresh, 0
      if #ready == 0 then
        ids = fresh
      else
        ids = {}
        local nf, nr = #fresh, #ready / 2
        local i, j = 1, 1
        local next_fresh, next_ready = base + (tonumber(fresh[1]) or 0), tonumber(ready[2])
        while #ids < limit and (i <= nf or j <= nr) do
          if j > nr or (i <= nf and next_fresh < next_ready) then
            ids[#ids + 1] = fresh[i]
            i = i + 1
            if i <= nf then
              next_fresh = base + (tonumber(fresh[i]) or 0)
            end
          else
            ids[#ids + 1] = ready[2 * j - 1]
            j = j + 1
            if j <= nr then
              next_ready = tonumber(ready[2 * j])
            end
          end
        end
        taken_fresh, taken_ready = i - 1, j - 1
      end
      if taken_fresh > 0 then
        redis.call('LTRIM', FRESH, taken_fresh, -1)
      end
      if taken_ready > 0 then
        redis.call('ZREMRANGEBYRANK', READY, 0, taken_ready - 1)
        local taken = {}
        for k = 1, taken_ready do
          taken[k] = ready[2 * k - 1]
        end
        bulk('ZREM', DUE, taken)
      end
    end
    return ids
  end

  local ids = take()
  if #ids < limit then
    index_topic(false)
  end
  -- A member that is not an id names no task a lease could refer to: dropped.
  for i = #ids, 1, -1 do
    if not tonumber(ids[i]) then
      table.remove(ids, i)
    end
  end
  if #ids == 0 then
    return {}
  end
  -- One counter step hands out this claim's fencing tokens: last - #ids + 1 .. last.
  local last = redis.call('HINCRBY', META, 'token', #ids)
  local first = last - #ids
  local suffix = ':' .. deadline .. ';' .. now .. ';' .. retries .. ':' .. owner
  local leases = {}
  for i, id in ipairs(ids) do
    leases[2 * i - 1] = id
    leases[2 * i] = string.format('%d', first + i) .. suffix
  end
  bulk('HSET', LEASES, leases)
  count('started', #ids)
  return {last, ids, bulk('HMGET', TASKS, ids)}
end
