-- Prepended to every taskmill script (see scripts.rs).
--
-- Every script works on one topic, so every key it touches shares the hash tag
-- {namespace:topic} and lives in one hash slot.
--
-- KEYS: 1 meta, 2 ready, 3 scheduled, 4 dead, 5 later, 6 unique, 7 leases, 8 tasks,
--       9 fresh
-- ARGV: 1 wake channel, 2 event channel, 3 the topic as a JSON string,
--       then the script's own arguments from ARGV[4].
--
-- Stored numbers (timestamps, ids, tokens) are written from strings, never from Lua numbers
-- turned into text: Lua holds doubles and `..` formats them with 14 digits, so a script
-- must never round a value it did not compute. (Numbers handed to redis.call directly are
-- exact: Redis formats them with 17 digits.)
local META, READY, SCHEDULED, DEAD, LATER, UNIQUE, LEASES, TASKS, FRESH =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local WAKE, EVENTS, TOPIC_JSON = ARGV[1], ARGV[2], ARGV[3]

-- Claim order among due tasks: priority ascending, then id ascending (FIFO). The i16
-- priority shifted to 0..65535 takes 16 bits (the score's "band") and ids stay below
-- 2^37, so the score is below 2^53 and exact in a double.
local BAND = 137438953472
local function ready_score(priority, id)
  return (priority + 32768) * BAND + id
end

-- Due INPUT tasks are in READY or in FRESH. FRESH is a list of ids in strictly ascending
-- order, all of one priority: the META field `fresh_priority` (read only while the list is
-- not empty; it may change whenever the list is empty). Only an enqueue appends to it, and
-- only tasks above its tail; a claim takes from its head, merged with READY by score.
-- Every task that comes back to INPUT (retry, release, recover, requeue, promotion) goes
-- to READY, whatever its priority.

-- The 0-based position in FRESH of the first id not below `n`, and the list's length.
-- FRESH ascends, so this is a binary search: O(log length) LINDEX calls, each walking the
-- list's nodes (not its elements) from the nearer end.
local function fresh_lower_bound(n)
  local len = redis.call('LLEN', FRESH)
  local lo, hi = 0, len
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if (tonumber(redis.call('LINDEX', FRESH, mid)) or 0) < n then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo, len
end

-- Arguments per bulk call: far below Lua's C stack limit (LUAI_MAXCSTACK, 8000).
local BULK = 4000

-- Runs `command key t[from..to]` in a few calls instead of one per task (pairs stay
-- together: BULK is even). Returns the replies' elements, concatenated.
local function bulk_range(command, key, t, from, to)
  local out = {}
  for i = from, to, BULK do
    local reply = redis.call(command, key, unpack(t, i, math.min(i + BULK - 1, to)))
    if type(reply) == 'table' then
      if i == from and i + BULK > to then
        return reply
      end
      for _, v in ipairs(reply) do
        out[#out + 1] = v
      end
    end
  end
  return out
end

local function bulk(command, key, t)
  return bulk_range(command, key, t, 1, #t)
end

-- A task record (the value in TASKS) is one string:
--   attempt:max_retries:priority:enqueued_at:run_at:failed_at:xlen:ulen:elen:
-- followed by external_id, unique_key and last_error (xlen, ulen, elen bytes; an empty
-- length means the field is absent) and the args (JSON text, the rest). `attempt` counts
-- the runs before the current one: a claim leaves the record alone. codec.rs knows it too.
local RECORD = '^(%d+):(%d+):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d*):(%d*):(%d*):(%d*):()'

-- The record as a table of strings, or nil when it is missing or cannot be read.
local function parse_record(rec)
  if not rec then
    return nil
  end
  local a, m, p, e, r, f, xl, ul, el, pos = string.match(rec, RECORD)
  if not a then
    return nil
  end
  local t = {attempt = a, max_retries = m, priority = p, enqueued_at = e, run_at = r,
    failed_at = f}
  local function take(len)
    if len == '' then
      return nil
    end
    local s = string.sub(rec, pos, pos + tonumber(len) - 1)
    pos = pos + tonumber(len)
    return s
  end
  t.external_id, t.unique_key, t.last_error = take(xl), take(ul), take(el)
  if pos > #rec + 1 then
    return nil
  end
  t.args = string.sub(rec, pos)
  return t
end

local function opt_len(s)
  if s then
    return #s
  end
  return ''
end

local function pack_record(t)
  return table.concat({t.attempt, t.max_retries, t.priority, t.enqueued_at, t.run_at,
    t.failed_at, opt_len(t.external_id), opt_len(t.unique_key), opt_len(t.last_error),
    (t.external_id or '') .. (t.unique_key or '') .. (t.last_error or '') .. t.args}, ':')
end

-- Just the priority, for promotions (0 when the record cannot be read).
local function record_priority(rec)
  return tonumber(rec and string.match(rec, '^%d+:%d+:(%-?%d+):')) or 0
end

-- Indexes a task that (re)entered INPUT: ready when due at `now`, scheduled otherwise
-- (with its id in LATER, which lists scheduled tasks in id order).
local function push_input(id, priority, run_at, now)
  if tonumber(run_at) <= now then
    redis.call('ZADD', READY, ready_score(tonumber(priority) or 0, tonumber(id) or 0), id)
  else
    redis.call('ZADD', SCHEDULED, run_at, id)
    redis.call('ZADD', LATER, id, id)
  end
end

-- Frees the unique key a record holds, if this task still holds it.
local function free_unique(id, t)
  if t and t.unique_key and redis.call('HGET', UNIQUE, t.unique_key) == id then
    redis.call('HDEL', UNIQUE, t.unique_key)
  end
end

-- WORK is LEASES: id -> "token:deadline:owner" for every claimed task. The current run's
-- attempt is the record's plus one. WORK stays small (the tasks running now), which is why
-- the reaper may read it whole instead of keeping it sorted.
local function parse_lease(value)
  if not value then
    return nil
  end
  return string.match(value, '^(%d+):(%-?%d+):(.*)$')
end

local function count(field, n)
  if n > 0 then
    redis.call('HINCRBY', META, field, n)
  end
end

local function wake()
  redis.call('PUBLISH', WAKE, TOPIC_JSON)
end
