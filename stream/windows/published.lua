-- Confirm that the alert a claim stands for reached the alerts topic, so a redelivery of the same
-- event does not publish it again. KEYS[1] customer state hash; ARGV[1] rule id; ARGV[2] event digest.
local field = 'a:' .. ARGV[1]
local previous = redis.call('HGET', KEYS[1], field)
if not previous then return 0 end
local fired, event, published, episode = string.match(previous, '^(%d+)|([^|]*)|([01])|(.*)$')
if event ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], field, fired .. '|' .. event .. '|1|' .. episode)
return 1
