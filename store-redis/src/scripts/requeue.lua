-- Sends dead tasks of this topic back to INPUT with a fresh set of attempts.
-- ARGV[5] now, then ids. Returns per id 1 (moved) or 0 (not a dead task of this topic).
local now = tonumber(ARGV[5])
local out = {}
local moved = 0
for i = 6, #ARGV do
  local id = ARGV[i]
  local key = task_key(id)
  if redis.call('HGET', key, 'queue') == 'dead' then
    redis.call('ZREM', DEAD, id)
    redis.call('HSET', key, 'queue', 'input', 'run_at', ARGV[5], 'attempt', '0')
    redis.call('HDEL', key, 'failed_at')
    push_input(id, key, now, now)
    moved = moved + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
count('requeued', moved)
if moved > 0 then
  wake()
end
return out
