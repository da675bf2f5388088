-- settle: KEYS = the limits' keys; ARGV = reservation id, then four values per limit (the
-- amount being the actual use). Replaces the reservation's recorded amount in every limit
-- still holding it; a window it has left, or a period that has ended, is untouched.
local now = server_now()
local field = 'r:' .. ARGV[1]
for _, l in ipairs(parse_limits(1, 2)) do
  if l.kind == 'w' then
    window_prune(l, now)
    local previous = redis.call('HGET', l.key, field)
    if previous then
      local total = num(redis.call('HGET', l.key, 't')) + l.amount - tonumber(previous)
      redis.call('HSET', l.key, 't', fmt(total), field, fmt(l.amount))
    end
  else
    period_load(l, now)
    local previous = redis.call('HGET', l.key, field)
    if previous then
      -- a period settles each reservation once, as memory's dict.pop does
      redis.call('HSET', l.key, 'u', fmt(math.max(0, l.used + l.amount - tonumber(previous))))
      redis.call('HDEL', l.key, field)
    end
  end
end
return {'1'}
