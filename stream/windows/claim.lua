-- Claim the right to alert a customer for one rule, atomically (the alert dedupe/cooldown ledger).
-- KEYS[1] customer state hash
-- ARGV[1] rule id  ARGV[2] evaluation time (event time, epoch ms)  ARGV[3] cooldown (ms)
-- ARGV[4] triggering event id  ARGV[5] episode ('' if none)
-- Returns 'claimed'; 'reclaimed' when the same event claimed it before (a redelivery: send again,
-- the alert id is the same so sinks can drop the copy); or why not: 'cooldown' | 'episode'.
local field = 'a:' .. ARGV[1]
local now = tonumber(ARGV[2])
local previous = redis.call('HGET', KEYS[1], field)
if previous then
  local fired, event_id, episode = string.match(previous, '^(%d+)|([^|]*)|(.*)$')
  if event_id == ARGV[4] then return 'reclaimed' end
  if ARGV[5] ~= '' and episode == ARGV[5] then return 'episode' end
  if now < tonumber(fired) + tonumber(ARGV[3]) then return 'cooldown' end
end
redis.call('HSET', KEYS[1], field, ARGV[2] .. '|' .. ARGV[4] .. '|' .. ARGV[5])
return 'claimed'
