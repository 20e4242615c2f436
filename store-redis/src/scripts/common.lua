-- Prepended to every taskmill script (see scripts.rs).
--
-- Every script works on one topic, so every key it touches shares the hash tag
-- {namespace:topic} and lives in one hash slot.
--
-- KEYS: 1 meta, 2 ready, 3 scheduled, 4 dead, 5 later, 6 unique, 7 leases, 8 tasks,
--       9 fresh, 10 completed, 11 cancelled, 12 finished, 13 cancels, 14 progress, 15 due,
--       16 finish_log, 17 ends, 18 the namespace's waiting-topic index (WAITING below: the
--       one key of another slot)
-- ARGV: 1 wake channel, 2 event channel, 3 the topic as a JSON string,
--       then the script's own arguments from ARGV[4].
--
-- Stored numbers (timestamps, ids, tokens) are written from strings, never from Lua numbers
-- turned into text: Lua holds doubles and `..` formats them with 14 digits, so a script
-- must never round a value it did not compute. (Numbers handed to redis.call directly are
-- exact: Redis formats them with 17 digits.)
local META, READY, SCHEDULED, DEAD, LATER, UNIQUE, LEASES, TASKS, FRESH =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
-- COMPLETED and CANCELLED list the finished tasks kept as history by id (score the id),
-- except the completed tasks an id-ordered FINISH_LOG lists (see log_by_id below).
-- FINISH_LOG and FINISHED hold both in the order pruning takes them, by finished_at:
-- FINISH_LOG is a list of `finished_at:id` entries whose times never decrease (a task
-- finishing at or after the tail's time is appended: an RPUSH, where a sorted set costs a
-- skiplist insert), FINISHED a sorted set (score finished_at) of the tasks that finished
-- before the tail's time (an outcome applied with an older `now`), and of every task kept
-- before FINISH_LOG existed. A deleted task's FINISH_LOG entry stays until pruning reaches
-- it: ids are never reused, so an entry whose id is in none of COMPLETED, ENDS and
-- CANCELLED is stale.
-- CANCELS (id -> who asked) and PROGRESS (id -> the last value reported) belong to runs in
-- WORK, like LEASES, and are folded into the record when the run leaves WORK.
local COMPLETED, CANCELLED, FINISHED, CANCELS, PROGRESS =
  KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
-- DUE holds READY's tasks again, scored by run_at: with FRESH's head and SCHEDULED's
-- first entry it gives the earliest run_at in INPUT (stats) without a scan.
-- ENDS holds how each completed task kept as history ended (id -> the trailer below,
-- without its RS), so that a completion writes a few bytes beside the record instead of
-- reading and writing the record whole.
local DUE, FINISH_LOG, ENDS = KEYS[15], KEYS[16], KEYS[17]
local WAKE, EVENTS, TOPIC_JSON = ARGV[1], ARGV[2], ARGV[3]
-- WAITING, the waiting-topic index: a sorted set of topics that may have due INPUT work,
-- member the topic's hash tag TAG ('{ns:T}', what every key of the topic starts with),
-- score at most the earliest run_at in its INPUT ('-inf' while it has due work). The
-- invariant every script keeps: a topic that is not paused and has a task in INPUT is in
-- WAITING with a score at most that task's run_at. A member may be stale (a topic whose
-- INPUT emptied, or whose score is too low): the claim that visits it finds nothing and
-- corrects it (index_topic). It is the one key a topic's script touches outside the
-- topic's slot; a script called without it (KEYS[18] nil, as the per-topic scripts would be
-- under Redis Cluster) leaves the index alone, and the index is then rebuilt by a full pass
-- (reindex.lua) instead.
local WAITING = KEYS[18]
local TAG = META and string.sub(META, 1, -6)

-- Makes the topic whose keys start with `tag` ('{ns:T}') the one the helpers below work on,
-- with `topic_json` its name as JSON (for events): for the scripts that work on several
-- topics in one call (claim_many, enqueue_many, reindex), standalone Redis only, where a
-- script may touch keys it was not given. Only the keys enqueue_tasks, claim_topic and
-- index_topic use are set (building a key name costs about half a microsecond), plus
-- UNIQUE when `unique` is true, or only META, TASKS and FRESH when it is 'fresh'; the
-- others become nil, so a script that touched one would
-- fail rather than write elsewhere.
local function use_topic(tag, topic_json, unique)
  TAG, TOPIC_JSON = tag, topic_json
  if unique == 'fresh' then
    -- Only what enqueueing to FRESH takes (enqueue_many's short form); add_fresh calls
    -- use_topic again when the tasks must go to READY instead.
    META, TASKS, FRESH = tag .. ':meta', tag .. ':tasks', tag .. ':fresh'
    READY, SCHEDULED, LATER, LEASES, DUE, UNIQUE = nil, nil, nil, nil, nil, nil
    DEAD, COMPLETED, CANCELLED, FINISHED, CANCELS, PROGRESS, FINISH_LOG, ENDS =
      nil, nil, nil, nil, nil, nil, nil, nil
    return
  end
  META, READY, SCHEDULED, LATER, LEASES, TASKS, FRESH, DUE =
    tag .. ':meta', tag .. ':ready', tag .. ':scheduled', tag .. ':later', tag .. ':leases',
    tag .. ':tasks', tag .. ':fresh', tag .. ':due'
  UNIQUE = unique and tag .. ':unique' or nil
  DEAD, COMPLETED, CANCELLED, FINISHED, CANCELS, PROGRESS, FINISH_LOG, ENDS =
    nil, nil, nil, nil, nil, nil, nil, nil
end

-- While NOTED is a table (set by a script that works on several topics), note_input
-- gathers its (score, tag) pairs there, for one ZADD at the end (note_all).
local NOTED = nil

-- Notes in WAITING that the topic has a task in INPUT at `run_at` (a string or number):
-- added, or its score lowered to run_at (never raised: another task may be due earlier).
local function note_input(run_at)
  if not WAITING then
    return
  end
  if NOTED then
    NOTED[#NOTED + 1] = run_at
    NOTED[#NOTED + 1] = TAG
  else
    redis.call('ZADD', WAITING, 'LT', run_at, TAG)
  end
end

-- Writes what note_input gathered (a topic noted twice keeps its lower score: LT).
local function note_all()
  if NOTED and #NOTED > 0 then
    for i = 1, #NOTED, 4000 do
      redis.call('ZADD', WAITING, 'LT', unpack(NOTED, i, math.min(i + 3999, #NOTED)))
    end
  end
  NOTED = nil
end

-- Sets the topic's entry in WAITING from its queues: absent while paused or without INPUT
-- tasks, '-inf' while FRESH or READY holds a task (due now), else the first run_at of
-- SCHEDULED. `paused` is the topic's paused flag when the caller has read it (nil: read it).
local function index_topic(paused)
  if not WAITING then
    return
  end
  if paused == nil then
    paused = redis.call('HGET', META, 'paused') == '1'
  end
  if paused then
    redis.call('ZREM', WAITING, TAG)
  elseif redis.call('EXISTS', FRESH) == 1 or redis.call('EXISTS', READY) == 1 then
    redis.call('ZADD', WAITING, '-inf', TAG)
  else
    local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
    if first[2] then
      redis.call('ZADD', WAITING, first[2], TAG)
    else
      redis.call('ZREM', WAITING, TAG)
    end
  end
end

-- Claim order among due tasks: priority ascending, then id ascending (FIFO). The i16
-- priority shifted to 0..65535 takes 16 bits (the score's "band") and ids stay below
-- 2^37, so the score is below 2^53 and exact in a double.
local BAND = 137438953472
local function ready_score(priority, id)
  return (priority + 32768) * BAND + id
end

-- Due INPUT tasks are in READY or in FRESH. FRESH is a list of ids in strictly ascending
-- order, all of one priority: the META field `fresh_priority`, and their run_ats never
-- decrease along it: the META field `fresh_run_at` is the largest (both read only while
-- the list is not empty; they may change whenever the list is empty). So the list's head
-- has its earliest run_at. A list without `fresh_run_at` was written before the field
-- existed, its run_ats in no known order: nothing is appended to it (see enqueue.lua),
-- and stats read it whole until it drains (see stats.lua). Only an enqueue appends to
-- FRESH, and only tasks above its tail in id and run_at; a claim takes from its head,
-- merged with READY by score. Every task that comes back to INPUT (retry, release,
-- recover, requeue, promotion) goes to READY (and DUE), whatever its priority.

-- The 0-based position in FRESH (or in `list`, another topic's FRESH) of the first id not
-- below `n`, and the list's length. FRESH ascends, so this is a binary search:
-- O(log length) LINDEX calls, each walking the list's nodes (not its elements) from the
-- nearer end.
local function fresh_lower_bound(n, list)
  list = list or FRESH
  local len = redis.call('LLEN', list)
  local lo, hi = 0, len
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if (tonumber(redis.call('LINDEX', list, mid)) or 0) < n then
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
--   v2:attempt:max_retries:priority:enqueued_at:run_at:finished_at:first_started_at:
--   started_at:flags:xlen:ulen:elen:rlen:plen:clen:
-- followed by external_id, unique_key, errors, result, progress and cancelled_by (xlen ..
-- clen bytes; an empty length means the field is absent) and the args (JSON text, the
-- rest). max_retries and the times are empty when unset; flags holds 'u' when the unique
-- key is held while the finished task is kept, and 'h' when the task has headers: then
-- `hlen:` follows clen, and the headers (a JSON object of strings, which no script reads)
-- follow cancelled_by. errors is a JSON array of
-- {"attempt":n,"at":ms,"message":"..."}, oldest first. `attempt` counts the runs before
-- the current one: a claim leaves the record alone (see LEASES). codec.rs knows it too.
--
-- A completion does not rewrite the record: it writes how the run ended to ENDS (a
-- completion of an earlier version appended it to the record, after RS),
--   finished_at:started_at;max_retries:rlen:plen:<result><progress>
-- (started_at and max_retries from the lease, both empty for a lease written before
-- history), which reading folds in as the end of one more run (see apply_finish). RS
-- cannot occur in the args, which are JSON text (a control character there is escaped),
-- so the first RS after the length-prefixed strings ends them.
local RECORD = '^v2:(%d+):(%d*):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d*):(%-?%d*):(%-?%d*):(%a*):' ..
  '(%d*):(%d*):(%d*):(%d*):(%d*):(%d*):()'
-- The record of the layout before history (read, never written): no version mark,
--   attempt:max_retries:priority:enqueued_at:run_at:failed_at:xlen:ulen:elen:
-- then external_id, unique_key, last_error and the args. failed_at reads as finished_at,
-- last_error as the one error of attempt `attempt` at failed_at (0 when unset).
local OLD_RECORD = '^(%d+):(%d+):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d*):(%d*):(%d*):(%d*):()'

local RS = '\30'
local FINISH = '^(%-?%d+):(%-?%d*);(%d*):(%d*):(%d*):()'

-- The most errors a record keeps (taskmill_core::MAX_KEPT_ERRORS); older ones are dropped.
local MAX_KEPT_ERRORS = 10
-- The retry limit of a task that has none and whose lease carries none
-- (taskmill_core::DEFAULT_MAX_RETRIES).
local DEFAULT_MAX_RETRIES = 25

-- Reads `len` bytes at `pos` of `rec`: the string (nil for an empty length) and the next
-- position.
local function take(rec, pos, len)
  if len == '' then
    return nil, pos
  end
  local n = tonumber(len)
  return string.sub(rec, pos, pos + n - 1), pos + n
end

-- Folds a completion's trailer (the text after RS) into the record `t`: one more run,
-- its start and retry limit, finished at finished_at with its result and progress.
-- Returns false when the trailer cannot be read.
local function apply_finish(t, finish)
  local f, started, retries, rl, pl, pos = string.match(finish, FINISH)
  if not f then
    return false
  end
  t.attempt, t.finished_at = tonumber(t.attempt) + 1, f
  if started ~= '' then
    t.started_at = started
    if t.first_started_at == '' then
      t.first_started_at = started
    end
  end
  if t.max_retries == '' then
    t.max_retries = retries
  end
  local progress
  t.result, pos = take(finish, pos, rl)
  progress, pos = take(finish, pos, pl)
  if progress then
    t.progress = progress
  end
  return pos == #finish + 1
end

-- The record as a table of strings (absent fields nil, unset numbers ''), its trailer
-- folded in, or nil when it is missing or cannot be read.
local function parse_record(rec)
  if not rec then
    return nil
  end
  local t, pos
  local a, m, p, e, r, f, fs, s, flags, xl, ul, el, rl, pl, cl, at = string.match(rec, RECORD)
  if a then
    t = {attempt = a, max_retries = m, priority = p, enqueued_at = e, run_at = r,
      finished_at = f, first_started_at = fs, started_at = s, flags = flags}
    pos = at
    local hl
    if string.find(flags, 'h', 1, true) then
      hl, pos = string.match(rec, '^(%d+):()', pos)
      if not hl then
        return nil
      end
    end
    t.external_id, pos = take(rec, pos, xl)
    t.unique_key, pos = take(rec, pos, ul)
    t.errors, pos = take(rec, pos, el)
    t.result, pos = take(rec, pos, rl)
    t.progress, pos = take(rec, pos, pl)
    t.cancelled_by, pos = take(rec, pos, cl)
    if hl then
      t.headers, pos = take(rec, pos, hl)
    end
  else
    a, m, p, e, r, f, xl, ul, el, at = string.match(rec, OLD_RECORD)
    if not a then
      return nil
    end
    t = {attempt = a, max_retries = m, priority = p, enqueued_at = e, run_at = r,
      finished_at = f, first_started_at = '', started_at = '', flags = ''}
    pos = at
    local last_error
    t.external_id, pos = take(rec, pos, xl)
    t.unique_key, pos = take(rec, pos, ul)
    last_error, pos = take(rec, pos, el)
    if last_error then
      local when = f
      if when == '' then
        when = '0'
      end
      t.errors = '[{"attempt":' .. a .. ',"at":' .. when .. ',"message":' ..
        cjson.encode(last_error) .. '}]'
    end
  end
  if pos > #rec + 1 then
    return nil
  end
  local cut = string.find(rec, RS, pos, true)
  if cut then
    t.args = string.sub(rec, pos, cut - 1)
    if not apply_finish(t, string.sub(rec, cut + 1)) then
      return nil
    end
  else
    t.args = string.sub(rec, pos)
  end
  return t
end

-- The unique key of a record (nil for none) and whether it is held while the finished
-- record is kept, read without taking the record apart.
local UNIQUE_FIELDS = '^v2:%d+:%d*:%-?%d+:%-?%d+:%-?%d+:%-?%d*:%-?%d*:%-?%d*:(%a*):(%d*):(%d*):' ..
  '%d*:%d*:%d*:%d*:()'
local function record_unique(rec)
  if not rec then
    return nil, false
  end
  local flags, xl, ul, pos = string.match(rec, UNIQUE_FIELDS)
  if not flags then
    local t = parse_record(rec)
    return t and t.unique_key, false
  end
  if ul == '' then
    return nil, false
  end
  if string.find(flags, 'h', 1, true) then
    -- The headers' length comes before the strings.
    pos = string.match(rec, '^%d+:()', pos)
    if not pos then
      return nil, false
    end
  end
  local from = pos + (tonumber(xl) or 0)
  return string.sub(rec, from, from + tonumber(ul) - 1), string.find(flags, 'u', 1, true) ~= nil
end

local function opt_len(s)
  if s then
    return #s
  end
  return ''
end

-- The headers are written back as they were read (flag 'h' and their length with them).
local function pack_record(t)
  local lengths = {'v2', t.attempt, t.max_retries, t.priority, t.enqueued_at, t.run_at,
    t.finished_at, t.first_started_at, t.started_at, t.flags, opt_len(t.external_id),
    opt_len(t.unique_key), opt_len(t.errors), opt_len(t.result), opt_len(t.progress),
    opt_len(t.cancelled_by)}
  if t.headers then
    lengths[#lengths + 1] = #t.headers
  end
  lengths[#lengths + 1] = (t.external_id or '') .. (t.unique_key or '') .. (t.errors or '') ..
    (t.result or '') .. (t.progress or '') .. (t.cancelled_by or '') .. (t.headers or '') ..
    t.args
  return table.concat(lengths, ':')
end

-- Adds the error of attempt `attempt` at `at` (`message` a JSON string) to the record,
-- dropping the oldest beyond MAX_KEPT_ERRORS. Entries are written as
-- {"attempt":…} objects without nesting, and `{"` cannot occur inside a JSON string (a
-- quote there is escaped), so `,{"attempt":` marks the start of every entry but the
-- first.
local function push_error(t, attempt, at, message)
  local entry = '{"attempt":' .. attempt .. ',"at":' .. at .. ',"message":' .. message .. '}'
  local errors = t.errors
  if not errors or string.sub(errors, 1, 2) ~= '[{' then
    t.errors = '[' .. entry .. ']'
    return
  end
  local _, kept = string.gsub(errors, '{"attempt":', '')
  while kept >= MAX_KEPT_ERRORS do
    local second = string.find(errors, ',{"attempt":', 1, true)
    if not second then
      t.errors = '[' .. entry .. ']'
      return
    end
    errors = '[' .. string.sub(errors, second + 1)
    kept = kept - 1
  end
  t.errors = string.sub(errors, 1, -2) .. ',' .. entry .. ']'
end

-- Whether the task keeps its unique key while its finished record is kept.
local function holds_key_while_kept(t)
  return t and string.find(t.flags, 'u', 1, true) ~= nil
end

-- Just the run_at (a string), for stats and enqueues (nil when the record cannot be read).
local function record_run_at(rec)
  if not rec then
    return nil
  end
  return string.match(rec, '^v2:%d+:%d*:%-?%d+:%-?%d+:(%-?%d+):') or
    string.match(rec, '^%d+:%d+:%-?%d+:%-?%d+:(%-?%d+):')
end

-- Just the priority, for promotions (0 when the record cannot be read).
local function record_priority(rec)
  if not rec then
    return 0
  end
  return tonumber(string.match(rec, '^v2:%d+:%d*:(%-?%d+):') or
    string.match(rec, '^%d+:%d+:(%-?%d+):')) or 0
end

-- Indexes a task that (re)entered INPUT at `run_at` (a string): ready when due at `now`
-- (in READY and DUE), scheduled otherwise (with its id in LATER, which lists scheduled
-- tasks in id order).
local function push_input(id, priority, run_at, now)
  note_input(run_at)
  if tonumber(run_at) <= now then
    redis.call('ZADD', READY, ready_score(tonumber(priority) or 0, tonumber(id) or 0), id)
    redis.call('ZADD', DUE, run_at, id)
  else
    redis.call('ZADD', SCHEDULED, run_at, id)
    redis.call('ZADD', LATER, id, id)
  end
end

-- Frees `key` (nil for none), if task `id` still holds it.
local function free_key(id, key)
  if key and redis.call('HGET', UNIQUE, key) == id then
    redis.call('HDEL', UNIQUE, key)
  end
end

-- Frees the unique key a record holds, if this task still holds it.
local function free_unique(id, t)
  free_key(id, t and t.unique_key)
end

-- WORK is LEASES: id -> "token:deadline;started_at;max_retries:owner" for every claimed
-- task: the fencing token, the lease deadline, when the run started and the retry limit
-- the claim resolved for a task that sets none (the claim writes them here, not into the
-- record). A lease written before history is "token:deadline:owner" (a ':' follows the
-- deadline, never a ';'). The current run's attempt is the record's plus one. WORK stays
-- small (the tasks running now), which is why the reaper may read it whole instead of
-- keeping it sorted.
-- Returns token, deadline, started_at, max_retries, owner (started_at and max_retries nil
-- for an old lease), or nil when the value cannot be read.
local function parse_lease(value)
  if not value then
    return nil
  end
  local token, deadline, started, retries, owner =
    string.match(value, '^(%d+):(%-?%d+);(%-?%d+);(%d+):(.*)$')
  if token then
    return token, deadline, started, retries, owner
  end
  token, deadline, owner = string.match(value, '^(%d+):(%-?%d+):(.*)$')
  return token, deadline, nil, nil, owner
end

-- Folds what a run kept outside the record into it as the run leaves WORK: its start
-- (and the first start, the first time), the retry limit its claim resolved, and the last
-- progress it reported (`progress`, nil or false for none).
local function fold_run(t, lease, progress)
  local _, _, started, retries = parse_lease(lease)
  if started then
    t.started_at = started
    if t.first_started_at == '' then
      t.first_started_at = started
    end
    if t.max_retries == '' then
      t.max_retries = retries
    end
  end
  if progress then
    t.progress = progress
  end
end

-- Whether FINISH_LOG is also in id order (META `log_ids` = 1): its ids strictly ascend,
-- so it lists COMPLETED by id as well, and a completed task filed in it is in no
-- COMPLETED sorted set (its entry in ENDS says it is completed; META `logged` counts such
-- tasks). Set when a task is filed in an empty log. A log written before (times in
-- order, ids not) is moved to FINISHED a bounded chunk per filing call until it is empty:
-- its tasks are all in COMPLETED or CANCELLED already.
local function log_by_id()
  return redis.call('HGET', META, 'log_ids') == '1'
end

-- How many FINISH_LOG entries of the old form one filing call moves to FINISHED.
local LOG_MIGRATE = 1000

-- Files the tasks `ids`, which finished at `now` (a string), in finish order; `completed`
-- when they are COMPLETED tasks with an ENDS entry each (else CANCELLED, already in
-- CANCELLED). Returns the ids it filed in an id-ordered FINISH_LOG only (those need no
-- COMPLETED entry); the others went to FINISHED and, when `completed`, to COMPLETED.
local function file_finished(ids, now, completed)
  if #ids == 0 then
    return {}
  end
  local tail = redis.call('LINDEX', FINISH_LOG, -1)
  local ordered = log_by_id()
  if not ordered and not tail then
    redis.call('HSET', META, 'log_ids', '1')
    ordered = true
  elseif not ordered then
    -- Move a chunk of the old log (score finished_at, member the id) to FINISHED.
    local old = redis.call('LRANGE', FINISH_LOG, 0, LOG_MIGRATE - 1)
    local moved = {}
    for _, entry in ipairs(old) do
      local at, id = string.match(entry, '^(%-?%d+):(.*)$')
      if at then
        moved[#moved + 1] = at
        moved[#moved + 1] = id
      end
    end
    if #moved > 0 then
      bulk('ZADD', FINISHED, moved)
    end
    redis.call('LTRIM', FINISH_LOG, #old, -1)
    tail = redis.call('LINDEX', FINISH_LOG, -1)
    if not tail then
      redis.call('HSET', META, 'log_ids', '1')
      ordered = true
    end
  end
  local last_at, last_id = nil, nil
  if tail then
    local at, id = string.match(tail, '^(%-?%d+):(%d+)$')
    last_at, last_id = tonumber(at), tonumber(id)
  end
  local logged, entries, rest, listed = {}, {}, {}, {}
  -- With a tail that cannot be read nothing more is appended (its order is unknown).
  local appendable = not tail or (last_at and tonumber(now) >= last_at)
  for _, id in ipairs(ids) do
    local n = tonumber(id)
    if appendable and (not ordered or not last_id or (n and n > last_id)) then
      entries[#entries + 1] = now .. ':' .. id
      if ordered then
        last_id = n
        if completed then
          logged[#logged + 1] = id
        end
      elseif completed then
        listed[#listed + 1] = id
        listed[#listed + 1] = id
      end
    else
      -- Out of order (an older `now`, or an id below the tail's): FINISHED by time and,
      -- when completed, COMPLETED by id.
      rest[#rest + 1] = now
      rest[#rest + 1] = id
      if completed then
        listed[#listed + 1] = id
        listed[#listed + 1] = id
      end
    end
  end
  if #entries > 0 then
    bulk('RPUSH', FINISH_LOG, entries)
  end
  if #rest > 0 then
    bulk('ZADD', FINISHED, rest)
  end
  if #listed > 0 then
    bulk('ZADD', COMPLETED, listed)
  end
  if #logged > 0 then
    redis.call('HINCRBY', META, 'logged', #logged)
  end
  return logged
end

-- Whether `id` is COMPLETED: in COMPLETED, or (filed in an id-ordered FINISH_LOG) in ENDS.
local function is_completed(id)
  return redis.call('ZSCORE', COMPLETED, id) or redis.call('HEXISTS', ENDS, id) == 1
end

-- Ends a task in a finished queue (COMPLETED or CANCELLED) at `now` (a string): kept there
-- with its record `t` (nil for one that cannot be read, kept as it is), listed by id and by
-- finished_at, or removed when `keep` is false. Frees its unique key unless it holds it
-- while kept.
local function finish(id, t, queue, now, keep)
  if keep then
    if t then
      t.finished_at = now
      redis.call('HSET', TASKS, id, pack_record(t))
    end
    redis.call('ZADD', queue, id, id)
    file_finished({id}, now, false)
    if not holds_key_while_kept(t) then
      free_unique(id, t)
    end
  else
    free_unique(id, t)
    redis.call('HDEL', TASKS, id)
  end
end

-- Whether `id` is in FRESH (or in `list`, another topic's FRESH), and its 0-based
-- position there.
local function fresh_position(id, list)
  list = list or FRESH
  local n = tonumber(id)
  if not n then
    return nil
  end
  local at, len = fresh_lower_bound(n, list)
  if at < len and tonumber(redis.call('LINDEX', list, at)) == n then
    return at
  end
  return nil
end

-- Removes the entries of FRESH at `positions` (0-based, each once): each is overwritten by
-- a marker no id can equal, then the markers are removed in one pass from the nearer end
-- (LREM stops after the count it is given).
local function remove_from_fresh(positions)
  if #positions == 0 then
    return
  end
  local len = redis.call('LLEN', FRESH)
  local low, high = len, -1
  for _, at in ipairs(positions) do
    redis.call('LSET', FRESH, at, '-')
    low, high = math.min(low, at), math.max(high, at)
  end
  if high < len - 1 - low then
    redis.call('LREM', FRESH, #positions, '-')
  else
    redis.call('LREM', FRESH, -#positions, '-')
  end
end

local function count(field, n)
  if n > 0 then
    redis.call('HINCRBY', META, field, n)
  end
end

-- A script that works on several topics sets WOKE to false before its first topic, so
-- that wake() only notes the wake-up and the script publishes once at the end.
local WOKE = nil
local function wake()
  if WOKE == nil then
    redis.call('PUBLISH', WAKE, TOPIC_JSON)
  else
    WOKE = true
  end
end

-- Whether anyone listens on the event channel, asked once per script call. EVENTS is ''
-- on a Redis Cluster, where the store publishes the events itself (see layout.rs,
-- `events_for_scripts`), so scripts publish none.
local LISTENING = nil
local function listening()
  if LISTENING == nil then
    LISTENING = EVENTS ~= '' and redis.call('PUBSUB', 'NUMSUB', EVENTS)[2] > 0
  end
  return LISTENING
end
