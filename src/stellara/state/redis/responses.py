"""The Responses API's stored responses in Redis, so `previous_response_id` works on every
gateway process, under a size cap that holds exactly however many processes store at once.

Keys::

    {prefix}:{responses}:r:<id>   HASH u = user, b = blob, m = its index member; expires
                                  (PX) when the entry does
    {prefix}:{responses}:index    ZSET of the entries in the order they were stored: member
                                  `<seq>:<bytes>:<id>`, score `<seq>`
    {prefix}:{responses}:meta     HASH bytes = the sum over the index, seq = the last <seq>

The index and `meta` expire a second after the longest-lived entry, so an idle store leaves
Redis by itself. `<bytes>` is what the entry counts against the cap (`stored_bytes`); `<seq>`
makes a member unique, so an id stored again after its entry expired is never mistaken for
the old one: an entry is live while its key exists and names that member.

**One hash slot for the whole store.** `put` must count every entry of the deployment, evict
the oldest until the new one fits and write it, in one script: that is what keeps the cap
exact across processes, and a script can touch only one slot of a Redis Cluster. So every key
shares the hash tag `{responses}` — the keys it evicts, too, which the script names itself
from the popped members (they cannot be known before it runs; Cluster accepts undeclared keys
of the declared keys' slot). The cost: the store lives on one Cluster node, at most
`max_stored_bytes` of it, and its traffic (one `put` per stored response, one read per
continued conversation) goes there. Per-response hash tags would spread it, but then no
script could evict another slot's entries, and the cap would only hold eventually.

`put` also drops up to 100 expired entries from the oldest end (`memory.PRUNE_RESPONSES`),
whose keys Redis has already expired, so the count follows what is stored. An expired entry
further in still counts until it reaches that end; entries stored with one TTL expire in
store order, so there is none. `get` is one `HMGET` (Redis never returns an expired key);
`delete` one script, so the entry and its count leave together.

**Writes do not hold the answer.** `start_put` returns once the script is written to Redis
(which runs commands in the order they arrive, so a read any process sends after the client
has its answer runs after the write); the reply is awaited behind the answer. That write
goes on the pipelined request-path connection, up to `PIPELINED_BLOB_MAX` bytes: beyond, a
blob would hold up every request's limit scripts queued behind it, so a larger one goes
through the pooled client and `start_put` waits for its reply (an answer that large took
far longer to make than the write takes). Reads and deletes use the pooled client. Both
connections resend once after a lost connection, which is safe: `put` replaces an entry of
the same id (counted once), and a repeated `delete` finds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import RedisError

from stellara.errors import StateBackendError, StoredResponseTooLargeError
from stellara.state.base import StoredResponse, done, stored_bytes
from stellara.state.redis.pipelined import PipelinedRedis

# Larger blobs are written on the pooled client, not the shared pipelined connection.
PIPELINED_BLOB_MAX = 256 * 1024

# An index member is `<seq>:<bytes>:<id>`.
_MEMBERS = """
local function size_of(member) return tonumber(string.match(member, '^%d+:(%d+):')) end
"""

# KEYS: the entry, the index, meta. ARGV: user, blob, TTL ms, cap, bytes, id, and the prefix
# of every entry key (an evicted entry's key is that prefix and its id).
_PUT_SCRIPT = (
    _MEMBERS
    + """
local PRUNE = 100      -- memory.PRUNE_RESPONSES
local SLACK_MS = 1000  -- the index outlives its entries a little, never the other way round
local entry, index, meta = KEYS[1], KEYS[2], KEYS[3]
local ttl, cap, size, base = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[7]
local total = tonumber(redis.call('HGET', meta, 'bytes') or '0')

local function key_of(member) return base .. string.match(member, '^%d+:%d+:(.*)$') end
local function is_live(member) return redis.call('HGET', key_of(member), 'm') == member end

local replaced = redis.call('HGET', entry, 'm')
if replaced and redis.call('ZREM', index, replaced) == 1 then
  total = total - size_of(replaced)
end
for _ = 1, PRUNE do
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  if not oldest or is_live(oldest) then break end
  redis.call('ZREM', index, oldest)
  total = total - size_of(oldest)
end
while total + size > cap do
  local oldest = redis.call('ZPOPMIN', index)[1]
  -- Nothing left: the count outlived its index (removed by hand, or by maxmemory); it is 0.
  if not oldest then total = 0 break end
  total = total - size_of(oldest)
  if is_live(oldest) then redis.call('UNLINK', key_of(oldest)) end
end

local seq = redis.call('HINCRBY', meta, 'seq', 1)
local member = seq .. ':' .. ARGV[5] .. ':' .. ARGV[6]
redis.call('HSET', entry, 'u', ARGV[1], 'b', ARGV[2], 'm', member)
redis.call('PEXPIRE', entry, ttl)
redis.call('ZADD', index, seq, member)
redis.call('HSET', meta, 'bytes', total + size)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep_until = math.max(now + redis.call('PTTL', index), now + ttl + SLACK_MS)
redis.call('PEXPIREAT', index, keep_until)
redis.call('PEXPIREAT', meta, keep_until)
"""
)

# KEYS: the entry, the index, meta. Replies 1 when there was a live entry, else 0.
_DELETE_SCRIPT = (
    _MEMBERS
    + """
local member = redis.call('HGET', KEYS[1], 'm')
if not member then return 0 end
redis.call('UNLINK', KEYS[1])
if redis.call('ZREM', KEYS[2], member) == 1 then
  redis.call('HINCRBY', KEYS[3], 'bytes', -size_of(member))
end
return 1
"""
)


class RedisResponsesStore:
    """`ResponsesStore` shared by every process on one Redis; failures raise
    `StateBackendError`."""

    def __init__(
        self, client: Redis, commands: PipelinedRedis, *, key_prefix: str, where: str
    ) -> None:
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError(f"key_prefix {key_prefix!r} must not contain '{{' or '}}'")
        self._client = client
        self._commands = commands
        self._where = where
        tag = f"{key_prefix}:{{responses}}"
        self._entry_prefix = f"{tag}:r:"
        self._index = f"{tag}:index"
        self._meta = f"{tag}:meta"
        self._put = client.register_script(_PUT_SCRIPT)
        self._delete = client.register_script(_DELETE_SCRIPT)

    async def start_put(
        self, response_id: str, user: str, blob: bytes, ttl_s: float, *, max_stored_bytes: int
    ) -> Awaitable[None]:
        size = stored_bytes(response_id, user, blob)
        if size > max_stored_bytes:
            raise StoredResponseTooLargeError(size, max_stored_bytes)
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        args: list[str | bytes | int] = [user, blob, ttl_ms, max_stored_bytes, size]
        args += [response_id, self._entry_prefix]
        keys = self._keys(response_id)
        try:
            if len(blob) > PIPELINED_BLOB_MAX:
                await self._put(keys=keys, args=args)
                return done()
            reply = await self._commands.send_script(self._put, keys, args)
        except (RedisError, OSError) as exc:
            raise self._error("put", exc) from exc
        return self._replied(reply)

    async def _replied(self, reply: Awaitable[object]) -> None:
        try:
            await reply
        except (RedisError, OSError) as exc:
            raise self._error("put", exc) from exc

    async def get(self, response_id: str) -> StoredResponse | None:
        try:
            # NEVER_DECODE: the blob is the caller's bytes, whatever the client decodes
            user, blob = await self._client.execute_command(  # type: ignore[no-untyped-call]
                "HMGET", self._entry_prefix + response_id, "u", "b", **{NEVER_DECODE: []}
            )
        except (RedisError, OSError) as exc:
            raise self._error("get", exc) from exc
        if blob is None:
            return None
        return StoredResponse(user.decode(), blob)

    async def delete(self, response_id: str) -> bool:
        try:
            existed = await self._delete(keys=self._keys(response_id))
        except (RedisError, OSError) as exc:
            raise self._error("delete", exc) from exc
        return bool(existed)

    def _keys(self, response_id: str) -> list[str]:
        return [self._entry_prefix + response_id, self._index, self._meta]

    def _error(self, operation: str, exc: BaseException) -> StateBackendError:
        detail = str(exc) or type(exc).__name__
        return StateBackendError(
            f"redis state backend at {self._where}: responses {operation}: {detail}"
        )
