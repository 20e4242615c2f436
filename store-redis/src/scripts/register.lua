-- Registers schedules at ARGV[1] (now): then four arguments per schedule, name, spec, zone
-- and topic. KEYS[1] the SCHEDULES hash. A new schedule gets a new state; a known one its
-- spec, zone and topic replaced and seen_at = max(seen_at, now), keeping its ticks and its
-- paused flag (ScheduleState::register). A state that cannot be read is replaced by a new
-- one. Returns the stored states, in order.
local SCHEDULES = KEYS[1]
local now = ARGV[1]
local out = {}
for i = 2, #ARGV, 4 do
  local name = ARGV[i]
  local s = parse_schedule(redis.call('HGET', SCHEDULES, name))
  if not s then
    s = new_schedule(ARGV[i + 3], now)
  elseif not at_least(s.seen_at, now) then
    s.seen_at = now
  end
  s.spec, s.zone, s.topic = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local packed = pack_schedule(s)
  redis.call('HSET', SCHEDULES, name, packed)
  out[#out + 1] = packed
end
return out
