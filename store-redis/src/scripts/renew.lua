-- Extends leases. ARGV[4] new deadline, then pairs: id, token.
-- Returns per lease 1 (renewed), 2 (owned, but a cancel was requested: not extended, so a
-- run that ignores the cancel loses its lease) or 0 (stale: the token no longer owns the
-- task).
local ids = {}
for i = 5, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  return {}
end
local leases = bulk('HMGET', LEASES, ids)
local requests = {}
if redis.call('EXISTS', CANCELS) == 1 then
  requests = bulk('HMGET', CANCELS, ids)
end
local out, renewed = {}, {}
for k, id in ipairs(ids) do
  local lease = leases[k]
  -- What follows the deadline (the start, the retry limit, the owner) stays as it is.
  local token, rest
  if lease then
    token, rest = string.match(lease, '^(%d+):%-?%d+([;:].*)$')
  end
  if not token or token ~= ARGV[5 + (k - 1) * 2 + 1] then
    out[#out + 1] = 0
  elseif requests[k] then
    out[#out + 1] = 2
  else
    renewed[#renewed + 1] = id
    renewed[#renewed + 1] = token .. ':' .. ARGV[4] .. rest
    out[#out + 1] = 1
  end
end
bulk('HSET', LEASES, renewed)
return out
