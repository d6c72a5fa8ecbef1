-- Apply a run of one customer's events to their windows, in order, atomically, in one call.
-- KEYS[1] customer state hash
-- KEYS[1 + n] the n-th event's seen marker of the versions before the bounded dedupe (only read; same hash tag)
-- ARGV[1] retention horizon (days)   ARGV[2] event ids kept per customer   ARGV[3] idle ttl (s)
-- ARGV[4] feedback answers kept per kind
-- ARGV[5] the events, a JSON array of arrays of strings (one argument: packing thousands of separate
--   arguments was most of the client's cost):
--   {stream ('p' purchase | 'i' interaction | 'f' feedback), event time (epoch ms), segment ('' if none),
--    the event id's digest (12 characters, stream/windows/dedupe.py), then
--    purchase: amount in cents   interaction: kind   feedback: kind, score}
-- Returns {statuses, flat HGETALL of the state without the dedupe fields}: one status per event,
-- 'ok', 'duplicate' or 'late'; the state only if at least one event was not late (a late event
-- changes nothing).
--
-- One call per run, not per event: the day series are decoded once, changed in Lua tables, and
-- encoded once at the end (cjson was most of the script's cost); the result is the same as applying
-- the events one call at a time, as stream/windows/memory.py does.
--
-- Day series are JSON objects keyed by UTC day number, one hash field per series
-- ('p' = {day: [purchases, cents]}, 'i:<kind>' = {day: count}), so the field count stays small
-- however many days are kept, and memory is bounded by the horizon, not by the event count.
--
-- Dedupe (the reasoning and the guarantee: stream/windows/dedupe.py): 'dd' holds the ARGV[2] ids
-- with the latest event times, 20-byte records sorted by event second ('%08x' second .. digest);
-- 'df' the latest second ever evicted from it. An id in 'dd' is a duplicate; so is an event at or
-- before 'df' (it cannot be told apart from an evicted one); any other event is new.
local state = KEYS[1]
local horizon_days = tonumber(ARGV[1])
local ids_kept = tonumber(ARGV[2])
local feedback_kept = tonumber(ARGV[4])
local day_ms = 86400000
local REC = 20

local series_cache, dirty = {}, {}

local function load(field)
  local series = series_cache[field]
  if series == nil then
    local raw = redis.call('HGET', state, field)
    series = raw and cjson.decode(raw) or {}
    series_cache[field] = series
  end
  return series
end

local function save(field, series)
  series_cache[field] = series
  dirty[field] = true
end

local function flush()
  for field, _ in pairs(dirty) do
    local series = series_cache[field]
    if next(series) == nil then
      redis.call('HDEL', state, field)
    else
      redis.call('HSET', state, field, cjson.encode(series))
    end
  end
end

local function prune(series, oldest)
  for d, _ in pairs(series) do
    if tonumber(d) < oldest then series[d] = nil end
  end
  return series
end

local function keep_max(field, t, raw_t)
  local current = tonumber(redis.call('HGET', state, field) or '0')
  if t > current then redis.call('HSET', state, field, raw_t) end
end

local function kept(blob, digest)
  local from = 1
  while true do
    local at = string.find(blob, digest, from, true)
    if not at then return false end
    if (at - 1) % REC == 8 then return true end -- a digest, not a match across two records
    from = at + 1
  end
end

local function second_of(blob, n) -- the second of the n-th record (1-based)
  return tonumber(string.sub(blob, (n - 1) * REC + 1, (n - 1) * REC + 8), 16)
end

local dd = redis.call('HGET', state, 'dd') or ''

local function apply(n, event)
  local stream, raw_t, segment, digest = event[1], event[2], event[3], event[4]
  local t = tonumber(raw_t)
  local day = tostring(math.floor(t / day_ms))
  local sec = math.min(4294967295, math.max(0, math.floor(t / 1000)))

  -- 1. A redelivered event changes nothing: its id is among the kept ones, or (state written before
  --    the bounded dedupe) its old marker has not expired yet.
  if kept(dd, digest) or redis.call('EXISTS', KEYS[1 + n]) == 1 then return 'duplicate' end

  -- 2. Event time: an event older than the horizon behind this customer's latest event is dropped.
  local wm = tonumber(redis.call('HGET', state, 'wm') or '0')
  if wm > 0 and t < wm - horizon_days * day_ms then return 'late' end

  -- 2b. At or before the floor: maybe an evicted id, so taken for a duplicate. Otherwise recorded,
  --     after the records of its second, and the oldest beyond the bound evicted (raising the floor).
  local floor = redis.call('HGET', state, 'df')
  if floor and sec <= tonumber(floor) then return 'duplicate' end
  local count = #dd / REC
  local pos = count
  while pos > 0 and second_of(dd, pos) > sec do pos = pos - 1 end
  dd = string.sub(dd, 1, pos * REC) .. string.format('%08x', sec) .. digest .. string.sub(dd, pos * REC + 1)
  local drop = count + 1 - ids_kept
  if drop > 0 then
    local newest_dropped = second_of(dd, drop)
    if not floor or newest_dropped > tonumber(floor) then redis.call('HSET', state, 'df', newest_dropped) end
    dd = string.sub(dd, drop * REC + 1)
  end

  local new_wm = math.max(wm, t)
  local oldest = math.floor(new_wm / day_ms) - horizon_days + 1

  -- 3. Bucket the event by its own day, so late and out-of-order events land where they belong.
  if stream == 'p' then
    local cents = tonumber(event[5])
    local series = prune(load('p'), oldest)
    local bucket = series[day]
    if bucket then
      bucket[1] = bucket[1] + 1
      bucket[2] = bucket[2] + cents
    else
      series[day] = {1, cents}
      if tonumber(day) >= oldest then redis.call('HINCRBY', state, 'pdn', 1) end
    end
    save('p', series)
    redis.call('HINCRBY', state, 'pn', 1)
    redis.call('HINCRBY', state, 'ps', cents)
    local fp = tonumber(redis.call('HGET', state, 'fp') or '0')
    if fp == 0 or t < fp then redis.call('HSET', state, 'fp', raw_t) end
    keep_max('lp', t, raw_t)
  elseif stream == 'i' then
    local field = 'i:' .. event[5]
    local series = prune(load(field), oldest)
    series[day] = (series[day] or 0) + 1
    save(field, series)
    keep_max('li', t, raw_t)
  elseif stream == 'f' then
    local field = 'f:' .. event[5]
    local answers = load(field)
    local at = #answers + 1
    while at > 1 and answers[at - 1][1] > t do at = at - 1 end
    table.insert(answers, at, {t, tonumber(event[6])})
    while #answers > feedback_kept do table.remove(answers, 1) end
    save(field, answers)
  end

  -- 4. Take the segment of the newest event that carries one (its time kept in 'sgt', so an older
  --    event arriving late does not overwrite it); advance the watermark; once per new day, prune
  --    the series this event did not touch.
  if segment ~= '' and t >= tonumber(redis.call('HGET', state, 'sgt') or '0') then
    redis.call('HSET', state, 'sg', segment, 'sgt', raw_t)
  end
  if t > wm then redis.call('HSET', state, 'wm', raw_t) end
  local wm_day = math.floor(new_wm / day_ms)
  if tonumber(redis.call('HGET', state, 'pd') or '0') < wm_day then
    local fields = {}
    for _, f in ipairs(redis.call('HKEYS', state)) do fields[f] = true end
    for f, _ in pairs(series_cache) do fields[f] = true end -- created by this run, not written yet
    for f, _ in pairs(fields) do
      if f == 'p' or string.sub(f, 1, 2) == 'i:' then save(f, prune(load(f), oldest)) end
    end
    redis.call('HSET', state, 'pd', wm_day)
  end
  return 'ok'
end

local statuses, counted, changed = {}, false, false
local events = cjson.decode(ARGV[5])
for n = 1, #events do
  statuses[n] = apply(n, events[n])
  if statuses[n] ~= 'late' then counted = true end
  if statuses[n] == 'ok' then changed = true end
end

-- 5. Write what changed; an idle customer is forgotten.
if changed then
  flush()
  redis.call('HSET', state, 'dd', dd)
  redis.call('EXPIRE', state, tonumber(ARGV[3]))
end

local fields = {}
if counted then
  local flat = redis.call('HGETALL', state)
  for i = 1, #flat, 2 do
    if flat[i] ~= 'dd' and flat[i] ~= 'df' then
      fields[#fields + 1] = flat[i]
      fields[#fields + 1] = flat[i + 1]
    end
  end
end
return {statuses, fields}
