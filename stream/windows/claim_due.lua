-- Claim the customers whose judgement is due, atomically, so one worker judges each due moment.
-- KEYS[1] the partition's due index (sorted set: customer id -> due epoch ms)
-- ARGV[1] now (epoch ms)   ARGV[2] at most this many   ARGV[3] lease (ms)
-- Each claimed member is moved to now + lease: another scan does not see it while this worker
-- judges it, and if this worker dies before it writes the next due moment, the lease runs out and
-- the partition's next owner judges the customer. Returns the claimed customer ids, oldest due first.
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local until_ms = now + tonumber(ARGV[3])
for _, customer in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, customer)
end
return due
