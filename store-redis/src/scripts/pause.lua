-- Pauses (ARGV[4] = '1') or resumes (ARGV[4] = '0') claiming from this topic.
redis.call('HSET', META, 'paused', ARGV[4])
if ARGV[4] == '0' then
  wake()
end
return 1
