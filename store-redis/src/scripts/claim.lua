-- Moves up to `limit` due tasks of one topic from INPUT to WORK under new leases (see
-- claim_topic in claim_body.lua).
-- ARGV[4] now, ARGV[5] limit, ARGV[6] max_running ('' for none), ARGV[7] owner,
-- ARGV[8] lease deadline, ARGV[9] most scheduled tasks to promote in this call, ARGV[10]
-- the retry limit of claimed tasks that set none.
-- Returns {last token, {ids}, {records}} or {} (see claim_topic).
return claim_topic(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
