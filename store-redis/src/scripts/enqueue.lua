-- Adds a batch of tasks of one topic to INPUT: the arguments from ARGV[4] on are those of
-- `enqueue_tasks` (enqueue_body.lua).
--
-- On a Redis Cluster (a call without WAITING) the client sends a call again when its
-- connection broke before the reply came (a failover): a call whose first task is stored
-- already ran, since each call's ids are reserved for it alone, so it adds nothing again
-- (and answers no duplicates).
if not WAITING and redis.call('HEXISTS', TASKS, ARGV[13]) == 1 then
  return {}
end
return enqueue_tasks(4)
