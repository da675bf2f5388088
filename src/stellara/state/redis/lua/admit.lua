-- admit: KEYS = block key, registry, then the limits' keys; ARGV = reservation id, then four
-- values per limit (see parse_limits). Checks every limit and records the amounts in all of
-- them only if all have room. Reply: admitted ('1'/'0'); denied ('0' none, '-1' blocked, else
-- the refusing limit's 1-based index); retry_after_s; now; then per limit used and reset_at.
local now = server_now()
local id = ARGV[1]
local field = 'r:' .. id
local limits = parse_limits(3, 2)
load_all(limits, now)
-- A retry whose first reply was lost finds its reservation already recorded: count it once.
-- An admission records in every limit or in none, so the first limit tells.
if limits[1] and redis.call('HEXISTS', limits[1].key, field) == 1 then
  return states({'1', '0', '0', fmt(now)}, limits, now)
end
local blocked_until = num(redis.call('GET', KEYS[1]))
if blocked_until > now then
  return states({'0', '-1', fmt(blocked_until - now), fmt(now)}, limits, now)
end
for i, l in ipairs(limits) do
  if l.used + l.amount > l.limit + EPSILON then
    local wait = l.kind == 'w' and window_wait(l, now) or math.max(0, l.ends - now)
    return states({'0', tostring(i), fmt(wait), fmt(now)}, limits, now)
  end
end
local expires_ms = {}
for i, l in ipairs(limits) do expires_ms[i] = record(l, field, id, now) end
if #limits > 0 then register(KEYS[2], limits, expires_ms, now) end
return states({'1', '0', '0', fmt(now)}, limits, now)
