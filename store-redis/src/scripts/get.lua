-- One task of this topic as stored: {record or nil, lease or nil, queue}, queue being
-- 'work' (leased), 'input' (ready, fresh or scheduled), 'dead', or '' (in no queue).
-- ARGV[4] id.
local id = ARGV[4]
local function in_fresh()
  local n = tonumber(id)
  if not n then
    return false
  end
  local at, len = fresh_lower_bound(n)
  return at < len and tonumber(redis.call('LINDEX', FRESH, at)) == n
end
local lease = redis.call('HGET', LEASES, id)
local queue = ''
if lease then
  queue = 'work'
elseif redis.call('ZSCORE', READY, id) or redis.call('ZSCORE', SCHEDULED, id) then
  queue = 'input'
elseif redis.call('ZSCORE', DEAD, id) then
  queue = 'dead'
elseif in_fresh() then
  -- Last: the only index that costs more than one lookup.
  queue = 'input'
end
return {redis.call('HGET', TASKS, id), lease, queue}
