-- Apply one event to one customer's windows, atomically, in one round trip.
-- KEYS[1] customer state hash, KEYS[2] seen-event marker (both share the customer's hash tag)
-- ARGV[1] stream: 'p' purchase | 'i' interaction | 'f' feedback
-- ARGV[2] event time (epoch ms)   ARGV[3] retention horizon (days)
-- ARGV[4] dedupe ttl (s)          ARGV[5] idle ttl (s)
-- purchase:    ARGV[6] amount in cents
-- interaction: ARGV[6] kind
-- feedback:    ARGV[6] kind, ARGV[7] score, ARGV[8] answers kept per kind
-- Returns {status, flat HGETALL of the state}; status is 'ok', 'duplicate' or 'late'.
local state = KEYS[1]
local stream = ARGV[1]
local t = tonumber(ARGV[2])
local horizon_days = tonumber(ARGV[3])
local day_ms = 86400000
local day = math.floor(t / day_ms)

-- 1. A redelivered event changes nothing (its id is remembered for the dedupe ttl).
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[4])) then
  return {'duplicate', redis.call('HGETALL', state)}
end

-- 2. Event time: an event older than the horizon behind this customer's latest event is dropped.
local wm = tonumber(redis.call('HGET', state, 'wm') or '0')
if wm > 0 and t < wm - horizon_days * day_ms then
  return {'late', {}}
end

-- 3. Bucket the event by its own day, so late and out-of-order events land where they belong.
if stream == 'p' then
  local cents = tonumber(ARGV[6])
  redis.call('HINCRBY', state, 'p:' .. day, 1)
  redis.call('HINCRBY', state, 's:' .. day, cents)
  redis.call('HINCRBY', state, 'pn', 1)
  redis.call('HINCRBY', state, 'ps', cents)
  local fp = tonumber(redis.call('HGET', state, 'fp') or '0')
  if fp == 0 or t < fp then redis.call('HSET', state, 'fp', ARGV[2]) end
  local lp = tonumber(redis.call('HGET', state, 'lp') or '0')
  if t > lp then redis.call('HSET', state, 'lp', ARGV[2]) end
elseif stream == 'i' then
  redis.call('HINCRBY', state, 'i:' .. ARGV[6] .. ':' .. day, 1)
  local li = tonumber(redis.call('HGET', state, 'li') or '0')
  if t > li then redis.call('HSET', state, 'li', ARGV[2]) end
elseif stream == 'f' then
  local field = 'f:' .. ARGV[6]
  local keep = tonumber(ARGV[8])
  local raw = redis.call('HGET', state, field)
  local answers = raw and cjson.decode(raw) or {}
  local pos = #answers + 1
  while pos > 1 and answers[pos - 1][1] > t do pos = pos - 1 end
  table.insert(answers, pos, {t, tonumber(ARGV[7])})
  while #answers > keep do table.remove(answers, 1) end
  redis.call('HSET', state, field, cjson.encode(answers))
end

-- 4. Advance the watermark; once per new day, drop day buckets that fell out of the horizon.
if t > wm then
  redis.call('HSET', state, 'wm', ARGV[2])
  wm = t
end
local wm_day = math.floor(wm / day_ms)
local oldest = wm_day - horizon_days + 1
if tonumber(redis.call('HGET', state, 'pd') or '0') < wm_day then
  local stale = {}
  for _, f in ipairs(redis.call('HKEYS', state)) do
    local d = string.match(f, '^[ps]:(%d+)$') or string.match(f, '^i:[^:]+:(%d+)$')
    if d and tonumber(d) < oldest then stale[#stale + 1] = f end
  end
  for i = 1, #stale, 500 do
    redis.call('HDEL', state, unpack(stale, i, math.min(i + 499, #stale)))
  end
  redis.call('HSET', state, 'pd', wm_day)
end

-- 5. An idle customer is forgotten.
redis.call('EXPIRE', state, tonumber(ARGV[5]))
return {'ok', redis.call('HGETALL', state)}
