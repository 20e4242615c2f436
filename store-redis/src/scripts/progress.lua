-- Stores the latest progress of runs. ARGV[4..] triples: id, token, value (JSON text).
-- Returns per update 1 (stored), 2 (stored, and a cancel was requested) or 0 (stale: the
-- token no longer owns the task, nothing stored).
local ids, n = {}, 0
for i = 4, #ARGV, 3 do
  n = n + 1
  ids[n] = ARGV[i]
end
if n == 0 then
  return {}
end
local leases = bulk('HMGET', LEASES, ids)
local requests = {}
if redis.call('EXISTS', CANCELS) == 1 then
  requests = bulk('HMGET', CANCELS, ids)
end
local out, stored = {}, {}
for k, id in ipairs(ids) do
  local lease = leases[k]
  if lease and string.match(lease, '^%d+') == ARGV[4 + 3 * (k - 1) + 1] then
    -- While the task runs its progress lives in PROGRESS, so an update never rewrites the
    -- record; the run's outcome (or the reaper) folds it in.
    stored[#stored + 1] = id
    stored[#stored + 1] = ARGV[4 + 3 * (k - 1) + 2]
    if requests[k] then
      out[k] = 2
    else
      out[k] = 1
    end
  else
    out[k] = 0
  end
end
bulk('HSET', PROGRESS, stored)
return out
