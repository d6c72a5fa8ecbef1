-- The alert ledger: claim the right to alert a customer for one rule, atomically.
-- KEYS[1] customer state hash
-- ARGV[1] rule id  ARGV[2] evaluation time (event time, epoch ms)  ARGV[3] cooldown (ms)
-- ARGV[4] claim key: digest of the triggering event (no '|')  ARGV[5] episode ('' if none)
-- A claim is stored as 'fired_ms|key|published(0/1)|episode' in field 'a:<rule>'.
-- Returns {outcome, key}:
--   'claimed' (key = ARGV[4]);
--   'reclaimed' when an earlier claim was never confirmed published (a crash between claiming and
--     publishing): send it again under that claim's key, so the alert keeps its id;
--   'published' when this very event's alert was already published (a redelivery: do not send);
--   'episode' (this occurrence already alerted) or 'cooldown'.
local field = 'a:' .. ARGV[1]
local now = tonumber(ARGV[2])
local previous = redis.call('HGET', KEYS[1], field)
if previous then
  local fired, key, published, episode = string.match(previous, '^(%d+)|([^|]*)|([01])|(.*)$')
  if published == '0' then return {'reclaimed', key} end
  if key == ARGV[4] then return {'published', key} end
  if ARGV[5] ~= '' and episode == ARGV[5] then return {'episode', key} end
  if now < tonumber(fired) + tonumber(ARGV[3]) then return {'cooldown', key} end
end
redis.call('HSET', KEYS[1], field, ARGV[2] .. '|' .. ARGV[4] .. '|0|' .. ARGV[5])
return {'claimed', ARGV[4]}
