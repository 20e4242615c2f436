-- Sends dead tasks of this topic back to INPUT with a fresh set of attempts, keeping their
-- errors.
-- ARGV[4] now, then ids. Returns per id 1 (moved) or 0 (not a dead task of this topic).
local now = tonumber(ARGV[4])
local out = {}
local moved = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', DEAD, id) == 1 then
    local t = parse_record(redis.call('HGET', TASKS, id))
    -- A record that cannot be read moves as it is (a claim hands it over as corrupt).
    if t then
      t.attempt, t.run_at, t.finished_at = '0', ARGV[4], ''
      redis.call('HSET', TASKS, id, pack_record(t))
    end
    push_input(id, t and t.priority, ARGV[4], now)
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
