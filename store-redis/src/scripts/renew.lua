-- Extends leases. ARGV[5] new deadline, then pairs: id, token.
-- Returns per lease 1 (renewed) or 0 (stale: the token no longer owns the task).
local out = {}
for i = 6, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = task_key(id)
  local cur = redis.call('HMGET', key, 'queue', 'token')
  if cur[1] == 'work' and cur[2] == token then
    redis.call('HSET', key, 'deadline', ARGV[5])
    redis.call('ZADD', WORK, 'XX', ARGV[5], id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
