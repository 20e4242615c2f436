-- A page of one queue of this topic in ascending id order.
-- ARGV[5] queue ('input' | 'work' | 'dead'), ARGV[6] list ids above this, ARGV[7] limit.
-- Returns per task {id, {field, value, ...}, lease or nil}.
local after, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local ids = {}
if ARGV[5] == 'dead' then
  ids = redis.call('ZRANGEBYSCORE', DEAD, '(' .. ARGV[6], '+inf', 'LIMIT', 0, limit)
elseif ARGV[5] == 'work' then
  -- WORK holds at most the running tasks, so sorting it whole is cheap.
  for _, id in ipairs(redis.call('HKEYS', LEASES)) do
    local n = tonumber(id)
    if n and n > after then
      ids[#ids + 1] = id
    end
  end
  table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
  while #ids > limit do
    table.remove(ids)
  end
else
  -- INPUT is most of a topic, so walking all tasks in id order finds a page quickly. A
  -- task in WORK keeps queue 'input' in its hash; its lease tells it apart.
  local cursor, chunk = ARGV[6], 512
  while #ids < limit do
    local batch = redis.call('ZRANGEBYSCORE', ALL, '(' .. cursor, '+inf', 'LIMIT', 0, chunk)
    for _, id in ipairs(batch) do
      if #ids < limit and redis.call('HGET', task_key(id), 'queue') == 'input'
          and redis.call('HEXISTS', LEASES, id) == 0 then
        ids[#ids + 1] = id
      end
    end
    if #batch < chunk then
      break
    end
    cursor = batch[#batch]
  end
end
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = {
    id,
    redis.call('HGETALL', task_key(id)),
    redis.call('HGET', LEASES, id),
  }
end
return out
