-- Adds batches of tasks of several topics to INPUT in one call, each exactly as
-- enqueue.lua adds one topic's (enqueue_tasks, enqueue_body.lua), with one wake-up for
-- the call instead of one per topic. Standalone Redis only: the topics' keys are built
-- here from their tags (use_topic), not passed as KEYS (which hold the first topic's keys,
-- for the preamble).
-- ARGV from 4, per topic: its tag ('{ns:T}'), its name as JSON, the count c of its
-- arguments, then its c arguments of enqueue_tasks; or, for one task that is due, has no
-- unique key and was not fired by a schedule (most topics of a batch spread over many
-- topics), c = 0 and four: its id, its record, its priority and its run_at. Each argument
-- costs Redis about half a microsecond to hand to Lua, so the short form saves most of a
-- topic's cost.
-- Returns per topic, in order, what enqueue_tasks returned for it.
WOKE, NOTED = false, {}
local out = {}
local a = 4
local last = #ARGV
while a <= last do
  local c = tonumber(ARGV[a + 2])
  if c == 0 then
    use_topic(ARGV[a], ARGV[a + 1], 'fresh')
    local id, run_at = ARGV[a + 3], ARGV[a + 6]
    -- As enqueue_tasks takes one due task meant for FRESH: n = f = 1, no ready,
    -- scheduled, unique or fired tasks, first and last run_at the task's.
    out[#out + 1] = enqueue_tasks(1, {'1', '1', ARGV[a + 5], '0', '0', '0', run_at, run_at,
      '0', id, ARGV[a + 4], id})
    a = a + 7
  else
    -- ARGV[a + 3 + 5] is the topic's count of tasks with a unique key (enqueue_body.lua).
    use_topic(ARGV[a], ARGV[a + 1], ARGV[a + 8] ~= '0')
    out[#out + 1] = enqueue_tasks(a + 3)
    a = a + 3 + c
  end
end
note_all()
if WOKE then
  redis.call('PUBLISH', WAKE, TOPIC_JSON)
end
return out
