-- Adds batches of tasks of several topics to INPUT in one call, each exactly as
-- enqueue.lua adds one topic's (enqueue_tasks, enqueue_body.lua), with one wake-up for
-- the call instead of one per topic. Standalone Redis only: the topics' keys are built
-- here from their tags (use_topic), not passed as KEYS (which hold the first topic's keys,
-- for the preamble).
-- ARGV from 4, per topic: its tag ('{ns:T}'), its name as JSON, the count c of its
-- arguments, then its c arguments of enqueue_tasks.
-- Returns per topic, in order, what enqueue_tasks returned for it.
WOKE, NOTED = false, {}
local out = {}
local a = 4
local last = #ARGV
while a <= last do
  -- ARGV[a + 3 + 5] is the topic's count of tasks with a unique key (enqueue_body.lua).
  use_topic(ARGV[a], ARGV[a + 1], ARGV[a + 8] ~= '0')
  out[#out + 1] = enqueue_tasks(a + 3)
  a = a + 3 + tonumber(ARGV[a + 2])
end
note_all()
if WOKE then
  redis.call('PUBLISH', WAKE, TOPIC_JSON)
end
return out
