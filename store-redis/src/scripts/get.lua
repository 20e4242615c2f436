-- One task of this topic as stored: {record or nil, lease or nil, queue}, queue being
-- 'work' (leased), 'input' (ready or scheduled), 'dead', or '' (in no queue).
-- ARGV[4] id.
local id = ARGV[4]
local lease = redis.call('HGET', LEASES, id)
local queue = ''
if lease then
  queue = 'work'
elseif redis.call('ZSCORE', READY, id) or redis.call('ZSCORE', SCHEDULED, id) then
  queue = 'input'
elseif redis.call('ZSCORE', DEAD, id) then
  queue = 'dead'
end
return {redis.call('HGET', TASKS, id), lease, queue}
