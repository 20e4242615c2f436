-- The first step of a fire on a Redis Cluster (see ops.rs `fire`), on the schedule hash's
-- slot: decides whether the tick is enqueued, as fire.lua does before enqueueing, and
-- records the tick when it is not. It does not record a tick that goes on: fire_enqueue
-- marks it in the topic, and fire_commit records it here after.
--
-- KEYS: 1 the SCHEDULES hash (see schedule.lua).
-- ARGV: 1 the schedule's name, 2 the tick (ms), 3 '1' to skip the tick while the last task
-- is unfinished (Overlap::Skip), 4 now (ms), 5 the tick's topic, 6 the last task the
-- caller looked at ('' for none), 7 '1' when that task was unfinished.
--
-- Returns {'stale', last tick}, {'paused'}, {'overlapped', last task}; {'check', last task,
-- its topic} when the overlap check needs a look at a task the caller did not look at
-- (nothing changed); {'go'} when the tick is to be enqueued; {'corrupt'} when the state
-- cannot be read (nothing changed).
local SCHEDULES = KEYS[1]
local name, at, skip, now, topic, checked, unfinished =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local s = fired_schedule(SCHEDULES, name, topic, now)
if not s then
  return {'corrupt'}
end

local decided = stale_or_paused(SCHEDULES, name, s, at)
if decided then
  return decided
end
if skip == '1' and s.last_task ~= '' then
  if checked ~= s.last_task then
    return {'check', s.last_task, s.last_topic or s.topic}
  end
  if unfinished == '1' then
    pass_tick(SCHEDULES, name, s, at)
    return {'overlapped', s.last_task}
  end
end
return {'go'}
