-- Prepended to every taskmill script (see scripts.rs).
--
-- Every script works on one topic, so every key it touches shares the hash tag
-- {namespace:topic} and lives in one Cluster slot. Task hashes are named from PREFIX
-- (same tag), which is why they are not all listed in KEYS.
--
-- KEYS: 1 meta, 2 ready, 3 scheduled, 4 dead, 5 all, 6 unique, 7 leases
-- ARGV: 1 task key prefix, 2 wake channel, 3 event channel, 4 the topic as a JSON string,
--       then the script's own arguments from ARGV[5].
--
-- Stored numbers (timestamps, ids) are written from ARGV strings, never from Lua numbers:
-- Lua holds doubles, and a script must never round a value it did not compute.
local META, READY, SCHEDULED, DEAD, ALL, UNIQUE, LEASES =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local PREFIX, WAKE, EVENTS, TOPIC_JSON = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

-- Claim order among due tasks: priority ascending, then id ascending (FIFO). The i16
-- priority shifted to 0..65535 takes 16 bits and ids stay below 2^37, so the score is
-- below 2^53 and exact in a double.
local function ready_score(priority, id)
  return (priority + 32768) * 137438953472 + id
end

local function task_key(id)
  return PREFIX .. id
end

-- Indexes a task that (re)entered INPUT: ready when due at `now`, scheduled otherwise.
local function push_input(id, key, run_at, now)
  if run_at <= now then
    local priority = tonumber(redis.call('HGET', key, 'priority')) or 0
    redis.call('ZADD', READY, ready_score(priority, tonumber(id) or 0), id)
  else
    redis.call('ZADD', SCHEDULED, run_at, id)
  end
end

-- Arguments per ZADD/ZREM call: far below Lua's C stack limit (LUAI_MAXCSTACK, 8000).
local BULK = 4000

-- Runs `command key args...` over a long argument list in a few calls instead of one per
-- task (pairs stay together: BULK is even). Returns the replies' elements, concatenated.
local function bulk(command, key, args, option)
  local out = {}
  for i = 1, #args, BULK do
    local reply
    if option then
      reply = redis.call(command, key, option, unpack(args, i, math.min(i + BULK - 1, #args)))
    else
      reply = redis.call(command, key, unpack(args, i, math.min(i + BULK - 1, #args)))
    end
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do
        out[#out + 1] = v
      end
    end
  end
  return out
end

-- WORK is LEASES: id -> "token:attempt:unique:deadline:owner" for every claimed task.
-- `attempt` counts the current run; the task hash keeps the count before it, so a release
-- simply leaves the hash alone. `unique` is '1' when the task holds a unique key, so
-- completing one without needs no read of its hash. WORK stays small (the tasks running
-- now), which is why the reaper may read it whole instead of keeping it sorted.
local function parse_lease(value)
  if not value then
    return nil
  end
  local token, attempt, unique, deadline, owner =
    string.match(value, '^(%d+):(%d+):([01]):(%-?%d+):(.*)$')
  return token, tonumber(attempt), unique, deadline, owner
end

local function lease_value(token, attempt, unique, deadline, owner)
  return string.format('%d:%d:%s:%s:%s', token, attempt, unique, deadline, owner)
end

-- The fields of a task hash, in the order the claim script reads them (codec.rs knows it).
local RECORD_FIELDS = {'queue', 'args', 'attempt', 'max_retries', 'priority', 'enqueued_at',
  'run_at', 'external_id', 'unique_key', 'last_error', 'failed_at'}

local function count(field, n)
  if n > 0 then
    redis.call('HINCRBY', META, field, n)
  end
end

local function wake()
  redis.call('PUBLISH', WAKE, TOPIC_JSON)
end
