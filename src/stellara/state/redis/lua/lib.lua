-- Shared by every script: prepended to each one when the backend loads it, so the window,
-- period and registry logic exists once. Mirrors stellara/state/memory.py; keep them in step.
--
-- Floats travel as strings both ways: Redis turns a Lua number reply into an integer.
-- Time is the server's TIME, never the caller's, so processes with drifting clocks agree.

local EPSILON = 1e-9      -- memory.EPSILON: float sums of costs drift by ~1e-12
local DAY_S = 86400
local SLACK_MS = 1000     -- keys outlive their data a little, never the other way round
local PAGE = 500          -- entries per ZRANGE page: bounds Lua's stack for unpack()

local function fmt(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', math.ceil(x)) end
local function num(s) return tonumber(s or '0') end

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- Days since 1970-01-01 to (year, month, day) and back: Howard Hinnant's civil algorithms,
-- exact for the proleptic Gregorian calendar (what Python's datetime uses).
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- periods.period_bounds: the key of the daily ('d') or monthly ('m') period holding `now` in a
-- zone `offset` seconds east of UTC, and when it ends (epoch s).
local function period_bounds(kind, now, offset)
  local days = math.floor((now + offset) / DAY_S)
  if kind == 'd' then
    return 'd' .. string.format('%d', days), (days + 1) * DAY_S - offset
  end
  local y, m = civil_from_days(days)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return string.format('m%04d%02d', y, m), days_from_civil(ny, nm, 1) * DAY_S - offset
end

-- A limit as the scripts see it. From ARGV[first_arg], four values per limit: kind ('w'
-- window, 'd' daily, 'm' monthly, 's' session), limit, param (window_s, utc_offset_s or
-- idle_s) and amount. From KEYS[first_key], two keys for a window (ZSET, HASH), one for a
-- period: the caller names every key so Cluster routes the call to the scope's slot.
local function parse_limits(first_key, first_arg)
  local limits, k = {}, first_key
  for a = first_arg, #ARGV - 3, 4 do
    local l = {kind = ARGV[a], limit = tonumber(ARGV[a + 1]), param = tonumber(ARGV[a + 2]),
      amount = tonumber(ARGV[a + 3])}
    if l.kind == 'w' then
      l.zkey, l.key, k = KEYS[k], KEYS[k + 1], k + 2
    else
      l.key, k = KEYS[k], k + 1
    end
    limits[#limits + 1] = l
  end
  return limits
end

-- Windows: a ZSET of reservation ids scored by time, and a HASH holding the running total
-- ('t') and each reservation's amount ('r:<id>'). Expired entries leave with their amounts.
local function window_prune(l, now)
  local horizon = fmt(now - l.param)
  local total = nil
  while true do
    local ids = redis.call('ZRANGEBYSCORE', l.zkey, '-inf', horizon, 'LIMIT', 0, PAGE)
    if #ids == 0 then break end
    total = total or num(redis.call('HGET', l.key, 't'))
    local fields = {}
    for i, id in ipairs(ids) do fields[i] = 'r:' .. id end
    for _, amount in ipairs(redis.call('HMGET', l.key, unpack(fields))) do
      if amount then total = total - tonumber(amount) end
    end
    redis.call('HDEL', l.key, unpack(fields))
    redis.call('ZREM', l.zkey, unpack(ids))
  end
  if total == nil then return end
  if redis.call('EXISTS', l.zkey) == 0 then
    redis.call('DEL', l.key) -- no drift survives an empty window
  else
    redis.call('HSET', l.key, 't', fmt(total))
  end
end

-- memory._Window.wait_for_room: seconds until `amount` fits as the oldest entries leave.
local function window_wait(l, now)
  local excess = l.used + l.amount - l.limit
  local start = 0
  while true do
    local page = redis.call('ZRANGE', l.zkey, start, start + PAGE - 1, 'WITHSCORES')
    if #page == 0 then return l.param end -- larger than the limit itself
    local fields = {}
    for i = 1, #page, 2 do fields[#fields + 1] = 'r:' .. page[i] end
    local amounts = redis.call('HMGET', l.key, unpack(fields))
    for i = 1, #amounts do
      excess = excess - num(amounts[i])
      if excess <= EPSILON then
        return math.max(0, tonumber(page[2 * i]) + l.param - now)
      end
    end
    start = start + PAGE
  end
end

-- Periods: a HASH with the period's key ('k', daily/monthly), its use ('u'), its end ('e')
-- and each unsettled reservation's amount ('r:<id>'). A stale period (a new day or month, a
-- session idle past its end) is deleted and the limit starts from zero.
local function period_load(l, now)
  local stored = redis.call('HMGET', l.key, 'k', 'u', 'e')
  if l.kind == 's' then
    if stored[3] and tonumber(stored[3]) > now then
      l.used, l.ends = num(stored[2]), tonumber(stored[3])
      return
    end
    l.ends = now + l.param
  else
    l.period, l.ends = period_bounds(l.kind, now, l.param)
    if stored[1] == l.period then
      l.used = num(stored[2])
      return
    end
  end
  if stored[2] then redis.call('DEL', l.key) end
  l.used = 0
end

-- Loads every limit's current use (pruning windows) into l.used (and l.ends for periods).
local function load_all(limits, now)
  for _, l in ipairs(limits) do
    if l.kind == 'w' then
      window_prune(l, now)
      l.used = num(redis.call('HGET', l.key, 't'))
    else
      period_load(l, now)
    end
  end
end

-- The reply's tail: per limit its use and when `remaining` next grows (LimitState.reset_at).
local function states(reply, limits, now)
  for _, l in ipairs(limits) do
    local reset_at = l.ends
    if l.kind == 'w' then
      local oldest = redis.call('ZRANGE', l.zkey, 0, 0, 'WITHSCORES')
      reset_at = oldest[2] and tonumber(oldest[2]) + l.param or now
    end
    reply[#reply + 1] = fmt(l.used)
    reply[#reply + 1] = fmt(reset_at)
  end
  return reply
end

-- Records `amount` under reservation `field` in one limit whose room was checked; every key
-- written gets an absolute expiry, returned (ms) for the scope's registry.
local function record(l, field, id, now)
  l.used = l.used + l.amount
  local expire_ms
  if l.kind == 'w' then
    redis.call('ZADD', l.zkey, fmt(now), id)
    redis.call('HSET', l.key, 't', fmt(l.used), field, fmt(l.amount))
    expire_ms = math.ceil((now + l.param) * 1000) + SLACK_MS
    redis.call('PEXPIREAT', l.zkey, int(expire_ms))
  else
    if l.kind == 's' then l.ends = now + l.param end
    redis.call('HSET', l.key, 'k', l.period or '', 'u', fmt(l.used), 'e', fmt(l.ends),
      field, fmt(l.amount))
    expire_ms = math.ceil(l.ends * 1000) + SLACK_MS
  end
  redis.call('PEXPIREAT', l.key, int(expire_ms))
  return expire_ms
end

-- The scope's registry, a ZSET of its limits' keys scored by expiry (ms), is how `reset` finds
-- them (session keys carry ids no caller remembers); a window is registered once, by its name
-- without the :z/:h suffix. Members whose keys expired leave it, so it stays as small as the
-- scope's live keys, and it expires with the last of them.
local function register(registry, limits, expires_ms, now)
  for i, l in ipairs(limits) do
    local member = l.zkey and string.sub(l.zkey, 1, -3) or l.key
    redis.call('ZADD', registry, int(expires_ms[i]), member)
  end
  redis.call('ZREMRANGEBYSCORE', registry, '-inf', int(now * 1000))
  local last = redis.call('ZRANGE', registry, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', registry, last[2]) end
end
