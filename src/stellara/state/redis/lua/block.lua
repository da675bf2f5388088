-- block: KEYS = block key; ARGV = seconds. Refuses the scope's admissions until now + seconds
-- (or a later block already set); the key expires when the block does.
local now = server_now()
local blocked_until = math.max(now + tonumber(ARGV[1]), num(redis.call('GET', KEYS[1])))
if blocked_until > now then
  redis.call('SET', KEYS[1], fmt(blocked_until), 'PX', int((blocked_until - now) * 1000))
end
return {'1'}
