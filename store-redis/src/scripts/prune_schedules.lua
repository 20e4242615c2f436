-- Removes the schedules whose seen_at is before ARGV[1]. KEYS[1] the SCHEDULES hash.
-- Returns how many it removed. Only seen_at is read (a state whose seen_at cannot be read
-- stays). One script, so a registration is either before it (and kept) or after it.
-- Schedules are few (one per periodic job), so the hash is read whole.
local SCHEDULES = KEYS[1]
local cutoff = ARGV[1]
local all = redis.call('HGETALL', SCHEDULES)
local gone = {}
for i = 1, #all, 2 do
  local seen = string.match(all[i + 1], '^s1:[01]:%-?%d*:%d*:%-?%d*:(%-?%d+):')
  if seen and not at_least(seen, cutoff) then
    gone[#gone + 1] = all[i]
  end
end
-- In slices far below Lua's C stack limit (see BULK in common.lua).
for i = 1, #gone, 1000 do
  redis.call('HDEL', SCHEDULES, unpack(gone, i, math.min(i + 999, #gone)))
end
return #gone
