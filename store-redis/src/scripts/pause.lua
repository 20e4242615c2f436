-- Pauses (ARGV[5] = '1') or resumes (ARGV[5] = '0') claiming from this topic.
redis.call('HSET', META, 'paused', ARGV[5])
if ARGV[5] == '0' then
  wake()
end
return 1
