-- The second step of a fire on a Redis Cluster (see ops.rs `fire`), on the tick's topic:
-- enqueues the tick's task with enqueue_tasks (enqueue_body.lua) unless the topic's META
-- already marks this schedule as fired at this tick or a later one. The mark (field
-- `fired:NAME`, value `tick:task id`) makes the step idempotent: of any number of managers
-- firing the same tick to the topic exactly one enqueues, and one that enqueued but did
-- not reach fire_commit is repaired by the next fire of the tick.
--
-- KEYS: 1..17 the keys of the tick's topic (common.lua).
-- ARGV: 4 the schedule's name, 5 the tick (ms), 6 the id reserved for the task, then from
-- 7 the arguments of enqueue_tasks for the one task.
--
-- Returns {'enqueued', id}, {'duplicate', existing id} (its unique key is held), or
-- {'fired', tick, task id} when the mark holds this tick or a later one (nothing changed).
local name, at, id = ARGV[4], ARGV[5], ARGV[6]
local field = 'fired:' .. name

local mark = redis.call('HGET', META, field)
if mark then
  local tick, task = string.match(mark, '^(%-?%d+):(%d+)$')
  if tick and at_least(tick, at) then
    return {'fired', tick, task}
  end
end

local duplicate = enqueue_tasks(7)
local answer = {'enqueued', id}
if duplicate[2] then
  answer = {'duplicate', duplicate[2]}
end
redis.call('HSET', META, field, at .. ':' .. answer[2])
return answer
