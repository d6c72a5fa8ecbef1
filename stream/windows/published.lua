-- Confirm that the alert a claim stands for reached the alerts topic, so no later evaluation
-- publishes it again. KEYS[1] customer state hash; ARGV[1] rule id; ARGV[2] claim key.
local field = 'a:' .. ARGV[1]
local previous = redis.call('HGET', KEYS[1], field)
if not previous then return 0 end
local fired, key, published, episode = string.match(previous, '^(%d+)|([^|]*)|([01])|(.*)$')
if key ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], field, fired .. '|' .. key .. '|1|' .. episode)
return 1
