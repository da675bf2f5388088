-- reset: KEYS = registry, block key, then the keys to delete; ARGV = '1' to lift a block, the
-- number of registry members the caller saw, those members, then the members to remove. The
-- caller chose from what it saw; if the registry changed since (a new session, a new limit),
-- nothing is deleted and {'0'} tells it to look again, so a reset never misses a key created
-- meanwhile.
local registry = KEYS[1]
local seen = tonumber(ARGV[2])
if redis.call('ZCARD', registry) ~= seen then return {'0'} end
for i = 3, 2 + seen do
  if not redis.call('ZSCORE', registry, ARGV[i]) then return {'0'} end
end
if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 3 + seen, #ARGV do redis.call('ZREM', registry, ARGV[i]) end
return {'1'}
