-- Pauses (ARGV[4] = '1') or resumes (ARGV[4] = '0') claiming from this topic. A paused
-- topic leaves WAITING (no claim visits it); a resumed one is put back from its queues.
redis.call('HSET', META, 'paused', ARGV[4])
index_topic(ARGV[4] == '1')
if ARGV[4] == '0' then
  wake()
end
return 1
