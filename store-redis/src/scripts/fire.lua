-- Fires one tick of a schedule: reads its state, decides as ScheduleState::decide does,
-- and either answers without enqueueing or enqueues the tick's task with enqueue_tasks
-- (enqueue_body.lua, exactly as enqueue.lua does) and records the tick, all in this one
-- script, so of any number of managers firing the same tick exactly one enqueues.
--
-- KEYS: 1..18 the keys of the tick's topic and WAITING (common.lua), 19 the SCHEDULES
-- hash (see schedule.lua), 20 the namespace's topic set; when ARGV[9] names another topic,
-- 21..24 that topic's leases, ready, scheduled and fresh.
-- ARGV: 4 the schedule's name, 5 the tick (ms), 6 '1' to skip the tick while the last
-- task is unfinished (Overlap::Skip), 7 now (ms), 8 the tick's topic, 9 the topic whose
-- keys are 21..24 ('' for none), 10 the id reserved for the task, then from 11 the
-- arguments of enqueue_tasks for the one task.
--
-- Returns {'enqueued', id}, {'duplicate', existing id}, {'stale', last tick},
-- {'paused'}, {'overlapped', last task}; {'topic', name} when the last task's topic is
-- neither the tick's nor ARGV[9]: nothing changed, and the caller calls again with that
-- topic's keys; {'corrupt'} when the state cannot be read (nothing changed).
local SCHEDULES, TOPICS = KEYS[19], KEYS[20]
local name, at, skip, now, topic, other, id =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]

local s = fired_schedule(SCHEDULES, name, topic, now)
if not s then
  return {'corrupt'}
end

-- Whether task `id` is in INPUT or WORK of the topic whose leases, ready, scheduled and
-- fresh keys are `k` (cheapest lookups first, FRESH's binary search last).
local function unfinished(k, task)
  return redis.call('HEXISTS', k[1], task) == 1 or
    redis.call('ZSCORE', k[2], task) ~= false or
    redis.call('ZSCORE', k[3], task) ~= false or
    fresh_position(task, k[4]) ~= nil
end

local decided = stale_or_paused(SCHEDULES, name, s, at)
if decided then
  return decided
end
if skip == '1' and s.last_task ~= '' then
  local last_topic = s.last_topic or s.topic
  local k
  if last_topic == topic then
    k = {LEASES, READY, SCHEDULED, FRESH}
  elseif last_topic == other then
    k = {KEYS[21], KEYS[22], KEYS[23], KEYS[24]}
  else
    return {'topic', last_topic}
  end
  if unfinished(k, s.last_task) then
    pass_tick(SCHEDULES, name, s, at)
    return {'overlapped', s.last_task}
  end
end

local duplicate = enqueue_tasks(11)
redis.call('SADD', TOPICS, topic)
local answer = {'enqueued', id}
if duplicate[2] then
  answer = {'duplicate', duplicate[2]}
end
s.last_tick, s.last_task, s.fired_at, s.last_topic = at, answer[2], now, topic
redis.call('HSET', SCHEDULES, name, pack_schedule(s))
return answer
