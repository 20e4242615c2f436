-- Cancels tasks of this topic. ARGV[4] now, ARGV[5] who cancels, ARGV[6] the same as a JSON
-- string, ARGV[7] the cancel channel, then ids.
-- Returns per id: 1 cancelled (it was in INPUT: now CANCELLED), 2 requested (it is in
-- WORK: the request is stored and its id published on the cancel channel), 3, 4 or 5
-- refused (in DEAD, COMPLETED or CANCELLED), or 0 (not a task of this topic).
local by = ARGV[5]
local out = {}
local requested, cancelled = {}, {}
-- Positions (0-based) in FRESH of the ids found there, removed together at the end (the
-- list must stay in id order for the searches until then).
local positions, marked = {}, {}
local head, tail = nil, nil
if redis.call('EXISTS', FRESH) == 1 then
  head = tonumber(redis.call('LINDEX', FRESH, 0))
  tail = tonumber(redis.call('LINDEX', FRESH, -1))
end
for i = 8, #ARGV do
  local id = ARGV[i]
  local code = 0
  if redis.call('HEXISTS', LEASES, id) == 1 then
    -- A second request keeps the first one's author.
    redis.call('HSETNX', CANCELS, id, by)
    requested[#requested + 1] = id
    code = 2
  else
    local ready = redis.call('ZREM', READY, id) == 1
    local input = ready or redis.call('ZREM', SCHEDULED, id) == 1
    if ready then
      redis.call('ZREM', DUE, id)
    elseif input then
      redis.call('ZREM', LATER, id)
    else
      local n = tonumber(id)
      local at = head and n and n >= head and n <= tail and fresh_position(id)
      if at and not marked[at] then
        marked[at] = true
        positions[#positions + 1] = at
        input = true
      end
    end
    if input then
      local t = parse_record(redis.call('HGET', TASKS, id))
      -- A record that cannot be read is cancelled as it is: it shows in CANCELLED as
      -- corrupt.
      if t then
        t.cancelled_by = by
      end
      finish(id, t, CANCELLED, ARGV[4], true)
      cancelled[#cancelled + 1] = id
      code = 1
    elseif redis.call('ZSCORE', DEAD, id) then
      code = 3
    elseif is_completed(id) then
      code = 4
    elseif redis.call('ZSCORE', CANCELLED, id) then
      code = 5
    end
  end
  out[#out + 1] = code
end
remove_from_fresh(positions)
count('cancelled', #cancelled)
if #cancelled > 0 then
  -- The topic may have no INPUT left.
  index_topic()
end
if #requested > 0 then
  redis.call('PUBLISH', ARGV[7], '[' .. table.concat(requested, ',') .. ']')
end
-- As enqueue does: events are built only when someone listens.
if #cancelled > 0 and listening() then
  local events = {}
  for i, id in ipairs(cancelled) do
    events[i] = '{"type":"TASK_CANCELLED","id":' .. id .. ',"topic":' .. TOPIC_JSON ..
      ',"by":' .. ARGV[6] .. ',"was_running":false}'
  end
  redis.call('PUBLISH', EVENTS, '[' .. table.concat(events, ',') .. ']')
end
return out
