-- read: KEYS = the limits' keys; ARGV = four values per limit. Records nothing (it only
-- drops expired entries and ended periods). Reply: now, then per limit used and reset_at.
local now = server_now()
local limits = parse_limits(1, 1)
load_all(limits, now)
return states({fmt(now)}, limits, now)
