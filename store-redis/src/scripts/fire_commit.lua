-- The third step of a fire on a Redis Cluster (see ops.rs `fire`), on the schedule hash's
-- slot: records that the schedule fired at a tick into a task of a topic, unless a later
-- or equal tick is recorded already (another manager got there first).
--
-- KEYS: 1 the SCHEDULES hash (see schedule.lua).
-- ARGV: 1 the schedule's name, 2 the tick (ms), 3 the task's id, 4 now (ms), 5 the topic.
--
-- Returns 1 when recorded, 0 when not (a later tick recorded, or a corrupt state, which
-- the next fire_decide reports).
local SCHEDULES = KEYS[1]
local name, at, task, now, topic = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local s = fired_schedule(SCHEDULES, name, topic, now)
if not s then
  return 0
end
if s.last_tick ~= '' and at_least(s.last_tick, at) then
  return 0
end
s.last_tick, s.last_task, s.fired_at, s.last_topic = at, task, now, topic
redis.call('HSET', SCHEDULES, name, pack_schedule(s))
return 1
