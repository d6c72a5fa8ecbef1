-- A customer came back: resolve their open absence alerts, once each.
-- KEYS[1] customer state hash
-- ARGV[1] the returning event's time (epoch ms)   ARGV[2..] rule ids the event resolves
-- An alert is open when its claim 'a:<rule>' (see claim.lua) is published and was made before this
-- event, and 'r:<rule>' does not yet name that claim as resolved-and-published. A resolution is
-- recorded as 'r:<rule>' = '<claim key>|0' and confirmed '|1' once it is on the alerts topic, so a
-- crash in between publishes it again on the next event, under the same id.
-- Returns a flat list {rule, claim key, fired ms, ...} of resolutions to publish.
local t = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local rule = ARGV[i]
  local claim = redis.call('HGET', KEYS[1], 'a:' .. rule)
  if claim then
    local fired, key, published = string.match(claim, '^(%d+)|([^|]*)|([01])|')
    if published == '1' and tonumber(fired) < t then
      local resolved = redis.call('HGET', KEYS[1], 'r:' .. rule)
      local rkey, confirmed = nil, nil
      if resolved then rkey, confirmed = string.match(resolved, '^([^|]*)|([01])$') end
      if rkey ~= key then
        redis.call('HSET', KEYS[1], 'r:' .. rule, key .. '|0')
        table.insert(out, rule); table.insert(out, key); table.insert(out, fired)
      elseif confirmed == '0' then
        table.insert(out, rule); table.insert(out, key); table.insert(out, fired)
      end
    end
  end
end
return out
