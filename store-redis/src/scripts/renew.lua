-- Extends leases. ARGV[4] new deadline, then pairs: id, token.
-- Returns per lease 1 (renewed) or 0 (stale: the token no longer owns the task).
local ids = {}
for i = 5, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  return {}
end
local leases = bulk('HMGET', LEASES, ids)
local out, renewed = {}, {}
for k, id in ipairs(ids) do
  local token, _, owner = parse_lease(leases[k])
  if token and token == ARGV[5 + (k - 1) * 2 + 1] then
    renewed[#renewed + 1] = id
    renewed[#renewed + 1] = token .. ':' .. ARGV[4] .. ':' .. owner
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
bulk('HSET', LEASES, renewed)
return out
