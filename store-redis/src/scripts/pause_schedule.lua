-- Pauses (ARGV[2] = '1') or resumes (ARGV[2] = '0') the schedule ARGV[1]. KEYS[1] the
-- SCHEDULES hash. Returns 1, 0 for an unknown schedule (nothing is created), -1 for a
-- state that cannot be read (left as it is).
local SCHEDULES = KEYS[1]
local raw = redis.call('HGET', SCHEDULES, ARGV[1])
if not raw then
  return 0
end
local s = parse_schedule(raw)
if not s then
  return -1
end
if s.paused ~= ARGV[2] then
  s.paused = ARGV[2]
  redis.call('HSET', SCHEDULES, ARGV[1], pack_schedule(s))
end
return 1
