-- Apply one event to one customer's windows, atomically, in one round trip.
-- KEYS[1] customer state hash
-- KEYS[2] the event's seen marker of the versions before the bounded dedupe (only read; same hash tag)
-- ARGV[1] stream: 'p' purchase | 'i' interaction | 'f' feedback
-- ARGV[2] event time (epoch ms)   ARGV[3] retention horizon (days)
-- ARGV[4] event ids kept per customer   ARGV[5] idle ttl (s)   ARGV[6] segment ('' if none)
-- ARGV[7] the event id's digest (12 characters, stream/windows/dedupe.py)
-- ARGV[8] '1': reply with the state; '0': without it (a batch needs only each customer's last one)
-- purchase:    ARGV[9] amount in cents
-- interaction: ARGV[9] kind
-- feedback:    ARGV[9] kind, ARGV[10] score, ARGV[11] answers kept per kind
-- Returns {status, flat HGETALL of the state without the dedupe fields (empty if ARGV[8] is '0')};
-- status is 'ok', 'duplicate' or 'late' (a late event's reply never has the state).
--
-- Day series are JSON objects keyed by UTC day number, one hash field per series
-- ('p' = {day: [purchases, cents]}, 'i:<kind>' = {day: count}), so the field count stays small
-- however many days are kept, and memory is bounded by the horizon, not by the event count.
--
-- Dedupe (the reasoning and the guarantee: stream/windows/dedupe.py): 'dd' holds the ARGV[4] ids
-- with the latest event times, 20-byte records sorted by event second ('%08x' second .. digest);
-- 'df' the latest second ever evicted from it. An id in 'dd' is a duplicate; so is an event at or
-- before 'df' (it cannot be told apart from an evicted one); any other event is new.
local state = KEYS[1]
local stream = ARGV[1]
local t = tonumber(ARGV[2])
local horizon_days = tonumber(ARGV[3])
local day_ms = 86400000
local day = tostring(math.floor(t / day_ms))

local function load(field)
  local raw = redis.call('HGET', state, field)
  if raw then return cjson.decode(raw) end
  return {}
end

local function save(field, series)
  if next(series) == nil then
    redis.call('HDEL', state, field)
  else
    redis.call('HSET', state, field, cjson.encode(series))
  end
end

local function prune(series, oldest)
  for d, _ in pairs(series) do
    if tonumber(d) < oldest then series[d] = nil end
  end
  return series
end

local function keep_max(field, value)
  local current = tonumber(redis.call('HGET', state, field) or '0')
  if value > current then redis.call('HSET', state, field, ARGV[2]) end
end

local REC = 20
local digest = ARGV[7]
local sec = math.min(4294967295, math.max(0, math.floor(t / 1000)))

local function window_fields()
  if ARGV[8] ~= '1' then return {} end
  local flat, out = redis.call('HGETALL', state), {}
  for i = 1, #flat, 2 do
    if flat[i] ~= 'dd' and flat[i] ~= 'df' then
      out[#out + 1] = flat[i]
      out[#out + 1] = flat[i + 1]
    end
  end
  return out
end

local function kept(blob)
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

-- 1. A redelivered event changes nothing: its id is among the kept ones, or (state written before
--    the bounded dedupe) its old marker has not expired yet.
local dd = redis.call('HGET', state, 'dd') or ''
if kept(dd) or redis.call('EXISTS', KEYS[2]) == 1 then
  return {'duplicate', window_fields()}
end

-- 2. Event time: an event older than the horizon behind this customer's latest event is dropped.
local wm = tonumber(redis.call('HGET', state, 'wm') or '0')
if wm > 0 and t < wm - horizon_days * day_ms then
  return {'late', {}}
end

-- 2b. At or before the floor: maybe an evicted id, so taken for a duplicate. Otherwise recorded,
--     after the records of its second, and the oldest beyond the bound evicted (raising the floor).
local floor = redis.call('HGET', state, 'df')
if floor and sec <= tonumber(floor) then
  return {'duplicate', window_fields()}
end
local n = #dd / REC
local pos = n
while pos > 0 and second_of(dd, pos) > sec do pos = pos - 1 end
dd = string.sub(dd, 1, pos * REC) .. string.format('%08x', sec) .. digest .. string.sub(dd, pos * REC + 1)
local drop = n + 1 - tonumber(ARGV[4])
if drop > 0 then
  local newest_dropped = second_of(dd, drop)
  if not floor or newest_dropped > tonumber(floor) then redis.call('HSET', state, 'df', newest_dropped) end
  dd = string.sub(dd, drop * REC + 1)
end
redis.call('HSET', state, 'dd', dd)

local new_wm = math.max(wm, t)
local oldest = math.floor(new_wm / day_ms) - horizon_days + 1

-- 3. Bucket the event by its own day, so late and out-of-order events land where they belong.
if stream == 'p' then
  local cents = tonumber(ARGV[9])
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
  if fp == 0 or t < fp then redis.call('HSET', state, 'fp', ARGV[2]) end
  keep_max('lp', t)
elseif stream == 'i' then
  local field = 'i:' .. ARGV[9]
  local series = prune(load(field), oldest)
  series[day] = (series[day] or 0) + 1
  save(field, series)
  keep_max('li', t)
elseif stream == 'f' then
  local field = 'f:' .. ARGV[9]
  local keep = tonumber(ARGV[11])
  local answers = load(field)
  local pos = #answers + 1
  while pos > 1 and answers[pos - 1][1] > t do pos = pos - 1 end
  table.insert(answers, pos, {t, tonumber(ARGV[10])})
  while #answers > keep do table.remove(answers, 1) end
  redis.call('HSET', state, field, cjson.encode(answers))
end

-- 4. Take the segment of the newest event that carries one (its time kept in 'sgt', so an older
--    event arriving late does not overwrite it); advance the watermark; once per new day, prune
--    the series this event did not touch.
if ARGV[6] ~= '' and t >= tonumber(redis.call('HGET', state, 'sgt') or '0') then
  redis.call('HSET', state, 'sg', ARGV[6], 'sgt', ARGV[2])
end
if t > wm then redis.call('HSET', state, 'wm', ARGV[2]) end
local wm_day = math.floor(new_wm / day_ms)
if tonumber(redis.call('HGET', state, 'pd') or '0') < wm_day then
  for _, f in ipairs(redis.call('HKEYS', state)) do
    if f == 'p' or string.sub(f, 1, 2) == 'i:' then save(f, prune(load(f), oldest)) end
  end
  redis.call('HSET', state, 'pd', wm_day)
end

-- 5. An idle customer is forgotten.
redis.call('EXPIRE', state, tonumber(ARGV[5]))
return {'ok', window_fields()}
