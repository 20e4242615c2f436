-- Moves up to `limit` due tasks of one topic from INPUT to WORK under new leases.
-- ARGV[4] now, ARGV[5] limit, ARGV[6] max_running ('' for none), ARGV[7] owner,
-- ARGV[8] lease deadline, ARGV[9] most scheduled tasks to promote in this call.
-- Returns {last token, {ids}, {records}}: the i-th of n tasks got token last - n + i. A
-- record is as stored (false when missing): a claim does not change it, the caller applies
-- the claim to it.
if redis.call('HGET', META, 'paused') == '1' then
  return {}
end
local limit = tonumber(ARGV[5])
if ARGV[6] ~= '' then
  local room = tonumber(ARGV[6]) - redis.call('HLEN', LEASES)
  if room < limit then
    limit = room
  end
end
if limit <= 0 then
  return {}
end
local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[9]))
if #due > 0 then
  local records = bulk('HMGET', TASKS, due)
  local promoted = {}
  for i, id in ipairs(due) do
    promoted[#promoted + 1] = ready_score(record_priority(records[i]), tonumber(id) or 0)
    promoted[#promoted + 1] = id
  end
  bulk('ZADD', READY, promoted)
  bulk('ZREM', SCHEDULED, due)
  bulk('ZREM', LATER, due)
end
local ids = redis.call('ZRANGE', READY, 0, limit - 1)
if #ids == 0 then
  return {}
end
redis.call('ZREMRANGEBYRANK', READY, 0, #ids - 1)
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
local suffix = ':' .. ARGV[8] .. ':' .. ARGV[7]
local leases = {}
for i, id in ipairs(ids) do
  leases[2 * i - 1] = id
  leases[2 * i] = string.format('%d', first + i) .. suffix
end
bulk('HSET', LEASES, leases)
count('started', #ids)
return {last, ids, bulk('HMGET', TASKS, ids)}
