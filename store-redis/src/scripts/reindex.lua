-- Builds the waiting-topic index (WAITING) from every topic's queues: for a namespace
-- written before the index existed (its topics' INPUT is not in WAITING), and as the full
-- pass that would keep the index under Redis Cluster, where the topic scripts cannot
-- write it. Standalone Redis only: the topics' keys are built here (use_topic).
-- KEYS: 1 WAITING, 2 the namespace's topic set, 3 the marker (set to '1' once built).
-- ARGV: 1 the namespace, 2 '1' to build even when the marker is set.
-- Returns the number of topics looked at (0 when the marker was set and not forced).
WAITING = KEYS[1]
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local topics = redis.call('SMEMBERS', KEYS[2])
for _, topic in ipairs(topics) do
  use_topic('{' .. ARGV[1] .. ':' .. topic .. '}', '""', false)
  index_topic()
end
redis.call('SET', KEYS[3], '1')
return #topics
