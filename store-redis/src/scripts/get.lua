-- One task of this topic as stored: {record or nil, lease or nil, queue, cancel request or
-- nil, progress or nil, how a completed run ended (ENDS) or nil}, queue being 'work'
-- (leased), 'input' (ready, fresh or scheduled), 'dead', 'completed', 'cancelled', or ''
-- (in no queue). The cancel request and the
-- progress are those of a run in WORK. ARGV[4] id.
local id = ARGV[4]
local lease = redis.call('HGET', LEASES, id)
local queue = ''
if lease then
  queue = 'work'
elseif redis.call('ZSCORE', READY, id) or redis.call('ZSCORE', SCHEDULED, id) then
  queue = 'input'
elseif redis.call('ZSCORE', DEAD, id) then
  queue = 'dead'
elseif is_completed(id) then
  queue = 'completed'
elseif redis.call('ZSCORE', CANCELLED, id) then
  queue = 'cancelled'
elseif fresh_position(id) then
  -- Last: the only index that costs more than one lookup.
  queue = 'input'
end
local request, progress = false, false
if lease then
  request = redis.call('HGET', CANCELS, id)
  progress = redis.call('HGET', PROGRESS, id)
end
local ended = false
if queue == 'completed' then
  ended = redis.call('HGET', ENDS, id)
end
return {redis.call('HGET', TASKS, id), lease, queue, request, progress, ended}
