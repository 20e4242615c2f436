-- Prepended to the schedule scripts (see scripts.rs): register, fire (after common.lua and
-- enqueue_body.lua), pause_schedule and prune_schedules.
--
-- Every schedule's state is one field of the namespace's SCHEDULES hash, the name being
-- the field (so a name is never part of a key: it needs no escaping, and `{}` in it cannot
-- act as a hash tag), the value one string:
--   s1:paused:last_tick:last_task:fired_at:seen_at:slen:zlen:tlen:llen:
-- followed by the spec, the zone, the topic and last_topic (slen .. llen bytes). paused is
-- 1 or 0; last_tick, last_task and fired_at are empty while the schedule never fired;
-- last_topic is the topic last_task was enqueued to (the schedule's topic may have been
-- registered anew since), absent (llen empty) with last_task. codec.rs reads it too.
-- Numbers are written from the strings they came as (ARGV), never from Lua numbers.
local SCHEDULE_STATE =
  '^s1:([01]):(%-?%d*):(%d*):(%-?%d*):(%-?%d+):(%d+):(%d+):(%d+):(%d*):()'

-- Whether the integer `a` is at least `b`, both decimal strings as Rust writes them (an
-- optional '-', no leading zeros), compared exactly: as Lua numbers (doubles) two
-- timestamps beyond 2^53 ms apart by less than their rounding would compare equal.
local function at_least(a, b)
  local a_neg, b_neg = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if a_neg ~= b_neg then
    return b_neg
  end
  if a_neg then
    -- Both negative: a >= b when |a| <= |b|.
    a, b = string.sub(b, 2), string.sub(a, 2)
  end
  if #a ~= #b then
    return #a > #b
  end
  return a >= b
end

-- The state as a table of strings (last_topic nil when absent), or nil when `raw` is nil
-- or cannot be read.
local function parse_schedule(raw)
  if not raw then
    return nil
  end
  local paused, last_tick, last_task, fired_at, seen_at, sl, zl, tl, ll, pos =
    string.match(raw, SCHEDULE_STATE)
  if not paused then
    return nil
  end
  local function cut(len)
    local value = string.sub(raw, pos, pos + len - 1)
    pos = pos + len
    return value
  end
  local s = {paused = paused, last_tick = last_tick, last_task = last_task,
    fired_at = fired_at, seen_at = seen_at}
  s.spec = cut(tonumber(sl))
  s.zone = cut(tonumber(zl))
  s.topic = cut(tonumber(tl))
  if ll ~= '' then
    s.last_topic = cut(tonumber(ll))
  end
  if pos ~= #raw + 1 then
    return nil
  end
  return s
end

local function pack_schedule(s)
  local ll = ''
  if s.last_topic then
    ll = #s.last_topic
  end
  return table.concat({'s1', s.paused, s.last_tick, s.last_task, s.fired_at, s.seen_at,
    #s.spec, #s.zone, #s.topic, ll, s.spec .. s.zone .. s.topic .. (s.last_topic or '')}, ':')
end

-- The state of a schedule new to the store, seen at `now` (ScheduleState::new): not
-- paused, never fired, with an empty spec and zone until they are set.
local function new_schedule(topic, now)
  return {paused = '0', last_tick = '', last_task = '', fired_at = '', seen_at = now,
    spec = '', zone = '', topic = topic}
end

-- The state of schedule `name` in the hash `hash` for a fire of it: the stored one, or
-- (none stored: fired before any registration) ScheduleState::unregistered's for `topic`
-- at `now`; nil when the stored state cannot be read.
local function fired_schedule(hash, name, topic, now)
  local raw = redis.call('HGET', hash, name)
  if not raw then
    return new_schedule(topic, now)
  end
  return parse_schedule(raw)
end

-- Records tick `at` as schedule `name`'s last without enqueueing (paused, overlapped).
local function pass_tick(hash, name, s, at)
  s.last_tick = at
  redis.call('HSET', hash, name, pack_schedule(s))
end

-- What a fire of tick `at` answers before any overlap check, as ScheduleState::decide
-- does: {'stale', last tick} for a tick at or before the last, {'paused'} (the tick
-- recorded) for a paused schedule; nil when the tick goes on.
local function stale_or_paused(hash, name, s, at)
  if s.last_tick ~= '' and at_least(s.last_tick, at) then
    return {'stale', s.last_tick}
  end
  if s.paused == '1' then
    pass_tick(hash, name, s, at)
    return {'paused'}
  end
  return nil
end
