-- The alert ledger: claim the right to alert a customer for one rule, atomically.
-- KEYS[1] customer state hash
-- ARGV[1] rule id  ARGV[2] evaluation time (event time, epoch ms)  ARGV[3] cooldown (ms)
-- ARGV[4] triggering event's digest (no '|')  ARGV[5] episode ('' if none)
-- A claim is stored as 'fired_ms|event|published(0/1)|episode' in field 'a:<rule>'.
-- Returns 'claimed', or for the same triggering event again (a redelivery): 'reclaimed' if its
-- alert was never confirmed published (send it again), 'published' if it was (do not).
-- Otherwise why not: 'episode' (this occurrence already alerted) or 'cooldown'.
local field = 'a:' .. ARGV[1]
local now = tonumber(ARGV[2])
local previous = redis.call('HGET', KEYS[1], field)
if previous then
  local fired, event, published, episode = string.match(previous, '^(%d+)|([^|]*)|([01])|(.*)$')
  if event == ARGV[4] then
    if published == '1' then return 'published' end
    return 'reclaimed'
  end
  if ARGV[5] ~= '' and episode == ARGV[5] then return 'episode' end
  if now < tonumber(fired) + tonumber(ARGV[3]) then return 'cooldown' end
end
redis.call('HSET', KEYS[1], field, ARGV[2] .. '|' .. ARGV[4] .. '|0|' .. ARGV[5])
return 'claimed'
