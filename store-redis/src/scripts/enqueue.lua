-- Adds a batch of tasks of one topic to INPUT: the arguments from ARGV[4] on are those of
-- `enqueue_tasks` (enqueue_body.lua).
return enqueue_tasks(4)
