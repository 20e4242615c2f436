-- Claims from several topics in one call, in the order given, as claim.lua would one
-- call per topic: each topic is asked for what the topics before it left of `limit`.
-- Standalone Redis only: the topics' keys are built here from their tags (use_topic),
-- not passed as KEYS (which hold the first topic's keys, for the preamble).
-- ARGV[4] now, ARGV[5] limit, ARGV[6] owner, ARGV[7] lease deadline, ARGV[8] most
-- scheduled tasks to promote per topic, then per topic four: its tag ('{ns:T}'), its
-- name as JSON, max_running ('' for none), the retry limit of tasks that set none.
-- Returns {i, last token, {ids}, {records}, ...}: for each topic that gave tasks, its
-- place among those given (1-based) and what claim_topic returned for it.
local now, owner, deadline, promote = ARGV[4], ARGV[6], ARGV[7], ARGV[8]
local remaining = tonumber(ARGV[5])
local out = {}
local place = 0
for a = 9, #ARGV, 4 do
  if remaining <= 0 then
    break
  end
  place = place + 1
  use_topic(ARGV[a], ARGV[a + 1], false)
  local got = claim_topic(now, remaining, ARGV[a + 2], owner, deadline, promote, ARGV[a + 3])
  if got[1] then
    out[#out + 1] = place
    out[#out + 1] = got[1]
    out[#out + 1] = got[2]
    out[#out + 1] = got[3]
    remaining = remaining - #got[2]
  end
end
return out
